"""Template tasks for the input modes: folders at a depth, JSONL rows, JSONL files."""

import json
import os

from dispatcher import Placeholder, Task
from templates import InputByDepth, InputFromJsonl, OutputWithExtension, cpu_task
from templates.input_modes import InputJsonlFiles  # what the operator adapters read with


@cpu_task(
    input_mode=InputByDepth(
        depth=Placeholder(int, default=1), kind=Placeholder(str, default="dir")
    ),
    output_mode=OutputWithExtension(".json"),
)
class Scenes(Task):
    """What a folder holds (or "file" for a file item)."""

    def process(self, input, output):
        with open(output, "w") as fh:
            json.dump(sorted(os.listdir(input)) if os.path.isdir(input) else "file", fh)


@cpu_task(
    input_mode=InputFromJsonl(path=Placeholder(str)), output_mode=OutputWithExtension(".json")
)
class Meta(Task):
    """Each object row's fields, as `process` receives them."""

    def process(self, input, output, path, caption, fps):
        fields = {"input": os.path.relpath(input, self.mixin.input), "path": path,
                  "caption": caption, "fps": fps, "exists": os.path.exists(input)}  # fmt: skip
        with open(output, "w") as fh:
            json.dump(fields, fh)


@cpu_task(
    input_mode=InputFromJsonl(key=Placeholder(str, default="id")),
    output_mode=OutputWithExtension(".txt"),
)
class Upper(Task):
    """Rows keyed by a field of their own (`id`), the JSONL file as the input."""

    def process(self, input, output, id, text):
        where = os.path.relpath(input, os.path.dirname(self.mixin.input))
        with open(output, "w") as fh:
            fh.write(text.upper() + " " + where)


@cpu_task(input_mode=InputJsonlFiles(), output_mode=OutputWithExtension(".out"))
class Rows(Task):
    """The `id` of a JSONL file's first row."""

    def process(self, input, output):
        with open(input) as src, open(output, "w") as dst:
            dst.write(json.loads(src.readline())["id"])
