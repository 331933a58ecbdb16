"""A task that writes its typed placeholders back, to check what the command line and the
YAML files made of the text typed."""

import json
import os

from dispatcher import Placeholder, Task, atomic_write


class Echo(Task):
    """Writes source, tags, min_chars and note to OUT/r.json."""

    mixin = {
        "out": Placeholder(str),
        "source": Placeholder(str),
        "tags": Placeholder(list[str], default=[]),
        "min_chars": Placeholder(int, default=1),
        "note": Placeholder(str | None, default=None),
    }

    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        with atomic_write(os.path.join(self.mixin.out, "r.json")) as tmp, open(tmp, "w") as fh:
            json.dump({k: self.mixin[k] for k in ("source", "tags", "min_chars", "note")}, fh)


class EchoRaw(Echo):
    """Echo with one more string placeholder, `raw`, for a config to interpolate from."""

    mixin = {**Echo.mixin, "raw": Placeholder(str)}
