"""A task that writes back every placeholder and its `--tag` option as it saw them: text,
optional text, numbers, anything, lists, dicts and forty string keys."""

import json
import os

from dispatcher import Placeholder, Task, atomic_write


class Echo(Task):
    mixin = {
        "out": Placeholder(str),
        "text": Placeholder(str, default="t"),
        "note": Placeholder(str | None, default="n"),
        "n": Placeholder(int, default=1),
        "any": Placeholder(default=None),
        "words": Placeholder(list[str], default=[]),
        "config": Placeholder(dict[str, str], default={}),
        "s": {f"k{i}": Placeholder(str, default="") for i in range(40)},
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--tag", default="t")

    def output_roots(self):
        return [self.mixin.out]

    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        os.makedirs(self.mixin.out, exist_ok=True)
        seen = {k: v for k, v in self.mixin.items() if k != "out"}
        with atomic_write(os.path.join(self.mixin.out, "r.json")) as tmp, open(tmp, "w") as fh:
            json.dump({**seen, "tag_option": self.args.tag}, fh)
