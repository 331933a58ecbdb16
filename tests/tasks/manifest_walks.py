"""A plain task over the .txt files of a folder that notes each walk of it (a line in
WALKS), so a test can count how often the input was walked."""

import os

from dispatcher import Placeholder, Task, atomic_write


class Walked(Task):
    mixin = {
        "input": Placeholder(str),
        "output": Placeholder(str),
        "walks": Placeholder(str),
        "suffix": Placeholder(str, default=".out"),
    }

    def input_roots(self):
        return [self.mixin.input]

    def output_roots(self):
        return [self.mixin.output]

    def generate_tasks(self):
        with open(self.mixin.walks, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        for folder, dirs, files in os.walk(self.mixin.input):
            dirs.sort()
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(folder, name), self.mixin.input)
                yield {"name": rel, "size": os.path.getsize(os.path.join(folder, name))}

    def item_key(self, item):
        return item["name"]

    def _out(self, name):
        return os.path.join(self.mixin.output, name + self.mixin.suffix)

    def is_executed(self, name, size):
        return os.path.exists(self._out(name))

    def process(self, name, size):
        with atomic_write(self._out(name)) as tmp, open(tmp, "w") as fh:
            fh.write(f"{name} {size}\n")
