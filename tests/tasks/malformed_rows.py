"""Rows of which some are malformed input (MalformedInput or a subclass), some fail in an
ordinary way, chosen with --mixin: `bad=3+17`, `boom=5`, `sub=3`, `lookalike=5`."""

import json
import os

from dispatcher import MalformedInput, Task, atomic_write


class BadRow(MalformedInput):
    """A task's own kind of malformed input: malformed input all the same."""


class Unrelated:
    class MalformedInput(ValueError):
        """Only named like dispatcher's: an ordinary failure."""


class Rows(Task):
    mixin = {"n": 30, "out": "out", "bad": "", "boom": "", "sub": "", "lookalike": ""}

    def generate_tasks(self):
        return [{"i": i} for i in range(self.mixin.n)]

    def is_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i}.json"))

    def process(self, i):
        if str(i) in str(self.mixin.bad).split("+"):
            raise MalformedInput(f"rows.jsonl:{i + 1}: not a JSON row")
        if str(i) in str(self.mixin.boom).split("+"):
            raise RuntimeError(f"boom {i}")
        if str(i) in str(self.mixin.sub).split("+"):
            raise BadRow(f"rows.jsonl:{i + 1}: not a JSON row either")
        if str(i) in str(self.mixin.lookalike).split("+"):
            raise Unrelated.MalformedInput(f"looks bad {i}")
        with atomic_write(os.path.join(self.mixin.out, f"{i}.json")) as tmp, open(tmp, "w") as fh:
            json.dump(i, fh)
