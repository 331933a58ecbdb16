"""A task whose items each take `sleep` seconds while their staged output is half written
(item `hang_on` takes two minutes): something in flight for a signal to find."""

import os
import time

from dispatcher import Placeholder, Task, atomic_write


class Slow(Task):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=30),
        "sleep": Placeholder(float, default=0.1),
        "hang_on": Placeholder(int, default=-1),
    }

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:04d}"

    def _out(self, i):
        return os.path.join(self.mixin.out, f"{i:04d}.txt")

    def is_executed(self, i):
        return os.path.exists(self._out(i))

    def process(self, i):
        with atomic_write(self._out(i)) as tmp, open(tmp, "w") as fh:
            fh.write("partial")
            fh.flush()
            time.sleep(120 if i == self.mixin.hang_on else self.mixin.sleep)
            fh.write(" done")
