"""A task with placeholders and options of its own, to see what the three configuration
layers (--cfg < --mixin-cfg < --mixin) made of them."""

import json
import os

from dispatcher import Placeholder, Task, atomic_write


class T(Task):
    """Writes its options and placeholders to OUT/r.json."""

    mixin = {
        "out": Placeholder(str),
        "who": Placeholder(str, default="nobody"),
        "n": Placeholder(int, default=1),
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--loud", action="store_true")
        parser.add_argument("--words", nargs="*", default=[])

    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        record = {
            "loud": self.args.loud,
            "words": self.args.words,
            "who": self.mixin.who,
            "n": self.mixin.n,
        }
        with atomic_write(os.path.join(self.mixin.out, "r.json")) as tmp, open(tmp, "w") as fh:
            json.dump(record, fh)
