"""A task that prints and logs from `process` (in mp workers, too)."""

import time

import dispatcher
from dispatcher import Placeholder, Task


class Printing(Task):
    mixin = {"n": Placeholder(int, default=8), "sleep": Placeholder(float, default=0.05)}

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:03d}"

    def process(self, i):
        time.sleep(self.mixin.sleep)
        print(f"printed {i}")
        dispatcher.get_logger().info(f"logged {i}")
