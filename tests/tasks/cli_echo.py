"""A task with every kind of setting the command line fills: placeholders (typed, with
choices, nested, in a list) and task options of its own. Alone in its module: the loader's
error for a wrong class name lists the task classes of the file."""

import json
import os

from dispatcher import MIXIN_PLACEHOLDER, Placeholder, Task, atomic_write


class Echo(Task):
    """Writes each item's resolved settings to OUT/<name>.json."""

    mixin = {
        "output": MIXIN_PLACEHOLDER,
        "n": Placeholder(int, default=2, help="how many items"),
        "mode": Placeholder(str, default="fast", choices=["fast", "slow"], help="speed"),
        "nested": {"deep": {"value": Placeholder(float, default=1.5, help="a deep one")}},
        "tags": [Placeholder(str, default="a"), "b"],
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--shout", action="store_true", help="upper-case the greeting")
        parser.add_argument("--words", nargs="+", default=["hi"], help="words to say")
        parser.add_argument("--level", type=int, default=0)

    def generate_tasks(self):
        return [{"name": f"item{i}"} for i in range(self.mixin.n)]

    def is_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def process(self, name):
        words = [w.upper() if self.args.shout else w for w in self.args.words]
        record = {
            "name": name,
            "mode": self.mixin.mode,
            "deep": self.mixin.nested.deep.value,
            "tags": list(self.mixin.tags),
            "words": words,
            "level": self.args.level,
        }
        path = os.path.join(self.mixin.output, name + ".json")
        with atomic_write(path) as tmp, open(tmp, "w") as fh:
            json.dump(record, fh)
