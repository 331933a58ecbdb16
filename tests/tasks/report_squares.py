"""A task writing i*i for each of `n` items; item `bad` raises."""

import os

from dispatcher import Placeholder, Task, atomic_write


class Squares(Task):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=12),
        "bad": Placeholder(int, default=-1),
    }

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:03d}"

    def _out(self, i):
        return os.path.join(self.mixin.out, f"{i:03d}.txt")

    def is_executed(self, i):
        return os.path.exists(self._out(i))

    def process(self, i):
        if i == self.mixin.bad:
            raise ZeroDivisionError(f"cannot square {i}")
        with atomic_write(self._out(i)) as tmp, open(tmp, "w") as fh:
            fh.write(str(i * i))
