"""A plain task for SLURM arrays: one JSON output per item saying which array task made it,
plus one journal line per committed item (outside the output root) so a second processing
would show."""

import json
import os
import sys
import time

from dispatcher import Placeholder, Task, atomic_write


class Stamp(Task):
    mixin = {
        "output": Placeholder(str),
        "journal": Placeholder(str),
        "count": Placeholder(int, default=12),
        "delay": Placeholder(float, default=0.0),
    }

    def generate_tasks(self):
        for i in range(self.mixin.count):
            yield {"name": f"item-{i:03d}"}

    def item_key(self, item):
        return item["name"]

    def _path(self, name):
        return os.path.join(self.mixin.output, name + ".json")

    def is_executed(self, name):
        return os.path.exists(self._path(name))

    def setup(self):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        print(f"stamp: process {os.getpid()} is array task {task}", file=sys.stderr, flush=True)

    def stamp(self, name):
        """What an output and its journal line say of the process that made them."""
        return {
            "name": name,
            "task": int(os.environ["SLURM_ARRAY_TASK_ID"]),
            "job": os.environ["SLURM_ARRAY_JOB_ID"],
            "pid": os.getpid(),
        }

    def process(self, name):
        time.sleep(self.mixin.delay)
        record = self.stamp(name)
        with atomic_write(self._path(name)) as tmp, open(tmp, "w") as fh:
            json.dump(record, fh)
        with open(self.mixin.journal, "a") as fh:
            fh.write(json.dumps(record) + "\n")
