"""A task whose item 3 fills the log directory (a filler file up to the last byte); odd
items then fail with errors too long to record. With `free=K`, item K removes the filler."""

import os

from dispatcher import Placeholder, Task, atomic_write


class Filler(Task):
    mixin = {
        "out": Placeholder(str),
        "logs": Placeholder(str),
        "n": Placeholder(int, default=10),
        "free": Placeholder(int, default=-1),
        "fail": Placeholder(bool, default=True),
    }

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:03d}"

    def is_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i:03d}.txt"))

    def process(self, i):
        filler = os.path.join(self.mixin.logs, "filler")
        if i == 3:
            with open(filler, "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"x" * 1024)
                except OSError:
                    pass
        if i == self.mixin.free:
            os.remove(filler)
        with (
            atomic_write(os.path.join(self.mixin.out, f"{i:03d}.txt")) as tmp,
            open(tmp, "w") as fh,
        ):
            fh.write(str(i))
        if self.mixin.fail and i % 2:
            raise ValueError(f"item {i} fails: " + "y" * 4000)
