"""A plain task that raises SystemExit, KeyboardInterrupt or GeneratorExit (`kind`) in
`hook` (process, on the items `on` lists; setup; teardown)."""

import os
import sys

from dispatcher import Placeholder, Task, atomic_write

RAISE = {
    "exit0": lambda: sys.exit(0),
    "exit3": lambda: sys.exit(3),
    "interrupt": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    "genexit": lambda: (_ for _ in ()).throw(GeneratorExit()),
}


def maybe(kind):
    if kind in RAISE:
        RAISE[kind]()


class Exits(Task):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=10),
        "on": Placeholder(str, default="-"),
        "kind": Placeholder(str, default="exit0"),
        "hook": Placeholder(str, default="process"),
    }

    def generate_tasks(self):
        return [{"i": i} for i in range(self.mixin.n)]

    def item_key(self, item):
        return f"{item['i']:03d}"

    def _out(self, i):
        return os.path.join(self.mixin.out, f"{i:03d}.txt")

    def is_executed(self, i):
        return os.path.exists(self._out(i))

    def setup(self):
        if self.mixin.hook == "setup":
            maybe(self.mixin.kind)

    def teardown(self):
        if self.mixin.hook == "teardown":
            maybe(self.mixin.kind)

    def process(self, i):
        if str(i) in self.mixin.on.split(","):
            maybe(self.mixin.kind)
        with atomic_write(self._out(i)) as tmp, open(tmp, "w") as fh:
            fh.write(str(i))
