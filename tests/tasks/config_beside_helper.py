"""A task that imports a module beside it (`helper`, copied next to it by the test) and
writes what it imported, its module name and whether its class lives in that module to
out/who.txt beside itself."""

import os

from helper import WHO

from dispatcher import Task, atomic_write


class T(Task):
    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
        same = type(self).__module__ == __name__
        with atomic_write(os.path.join(out, "who.txt")) as tmp, open(tmp, "w") as fh:
            fh.write(WHO + " " + __name__ + " " + str(same))
