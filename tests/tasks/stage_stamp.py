"""A plain task a backbone plugin runs: it logs the order items ran in and writes the
`stamp` the plugin set on it (its own option) beside each output."""

import os

from dispatcher import Placeholder, Task, atomic_write


class Stamp(Task):
    mixin = {"out": Placeholder(str)}

    def generate_tasks(self):
        return ({"i": i} for i in range(5))

    def item_key(self, item):
        return str(item["i"])

    def is_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i}.txt"))

    def process(self, i):
        os.makedirs(self.mixin.out, exist_ok=True)
        with open(os.path.join(self.mixin.out, "order.log"), "a") as fh:
            fh.write(f"{i}\n")
        with atomic_write(os.path.join(self.mixin.out, f"{i}.txt")) as tmp, open(tmp, "w") as fh:
            fh.write(getattr(self, "stamp", "none"))
