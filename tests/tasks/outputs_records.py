"""Tasks whose runs the record tests read: a walk that fails on a `bad` file, rows of a
listing, a listing that always fails, a task with repeated keys and one with no items."""

import os
from pathlib import Path

from dispatcher import Placeholder, Task, atomic_write
from templates import InputByExtensions, InputFromJsonl, OutputWithExtension, cpu_task


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(".out"),
    suffix=Placeholder(str, default="!"),
)
class Shout(Task):
    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--times", type=int, default=1)

    def process(self, input, output):
        text = Path(input).read_text()
        if "bad" in text:
            raise ValueError("a bad file")
        with open(output, "w") as fh:
            fh.write((text.upper() + self.mixin.suffix) * self.args.times)


@cpu_task(input_mode=InputFromJsonl(key="id"), output_mode=OutputWithExtension(".out"))
class Rows(Task):
    def process(self, input, output, **row):
        if row.get("bad"):
            raise ValueError(f"bad row {row['id']}")
        with open(output, "w") as fh:
            fh.write(str(row.get("v")))


@cpu_task(input_mode=InputFromJsonl(path=Placeholder(str)), output_mode=OutputWithExtension(".out"))
class Listed(Task):
    def process(self, input, output, **row):
        raise ValueError("never works")


class Doubled(Task):
    mixin = {"out": Placeholder(str)}

    def generate_tasks(self):
        for name in ["b", "a", "b", "c", "a", "b"]:
            yield {"name": name}

    def item_key(self, item):
        return item["name"]

    def process(self, name):
        with atomic_write(os.path.join(self.mixin.out, name)) as tmp, open(tmp, "w") as fh:
            fh.write(name)


class Nothing(Task):
    def generate_tasks(self):
        return iter(())
