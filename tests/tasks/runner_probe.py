"""A task that records, in probe.json beside itself, which heavy modules (torch, pandas,
pyarrow, av) were imported by the time its item ran."""

import json
import os
import sys
from pathlib import Path

from dispatcher import Task, atomic_write


class Probe(Task):
    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        heavy = sorted(m for m in ("torch", "pandas", "pyarrow", "av") if m in sys.modules)
        with atomic_write(os.path.join(os.path.dirname(__file__), "probe.json")) as tmp:
            Path(tmp).write_text(json.dumps(heavy))
