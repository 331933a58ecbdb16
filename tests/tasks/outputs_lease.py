"""Template tasks that record how each item was committed: whether its claim (a lock file
beside its output) was held while it ran. LEASE_DELAY slows each item; the item named by
LEASE_HANG writes part of its output, leaves its process id in `<output root>.pid` and
hangs."""

import json
import os
import time

from dispatcher import Placeholder, Task, atomic_write
from templates import InputByExtensions, OutputWithExtension, cpu_task

DELAY = float(os.environ.get("LEASE_DELAY", "0"))
HANG = os.environ.get("LEASE_HANG")


def claimed(final):
    head, tail = os.path.split(final)
    return os.path.exists(os.path.join(head, f".{tail}.dispatch-lock"))


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Probe(Task):
    def process(self, input, output):
        time.sleep(DELAY)
        final = os.path.join(self.mixin.output, os.path.basename(input) + ".json")
        with open(output, "w") as fh:
            if os.path.basename(input) == HANG:
                fh.write('{"partial')
                fh.flush()
                with open(self.mixin.output.rstrip("/") + ".pid", "w") as pid:
                    pid.write(str(os.getpid()))
                time.sleep(600)
            json.dump({"pid": os.getpid(), "claimed": claimed(final)}, fh)


class PlainProbe(Task):
    """A plain task writing with atomic_write under the output root it declares."""

    mixin = {"input": Placeholder(str), "output": Placeholder(str)}

    def generate_tasks(self):
        for name in sorted(os.listdir(self.mixin.input)):
            yield {"name": name}

    def output_roots(self):
        return [self.mixin.output]

    def is_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def process(self, name):
        time.sleep(DELAY)
        final = os.path.join(self.mixin.output, name + ".json")
        with atomic_write(final) as tmp, open(tmp, "w") as fh:
            json.dump({"pid": os.getpid(), "claimed": claimed(final)}, fh)
