"""Template tasks whose mode fields `-h` lists and `--print-config` writes back: sizes of
the .txt files of a walk (extension and tag placeholders), and rows of a JSONL listing."""

import json
from pathlib import Path

from dispatcher import Placeholder, Task
from templates import InputByExtensions, InputFromJsonl, OutputWithExtension, cpu_task


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(ext=Placeholder(str, default="json")),
    tag=Placeholder(str, default="t"),
)
class Sizes(Task):
    """Writes the size of every .txt file."""

    def process(self, input, output):
        with open(input, "rb") as src, open(output, "w") as fh:
            json.dump({"size": len(src.read()), "tag": self.mixin.tag}, fh)


@cpu_task(input_mode=InputFromJsonl(), output_mode=OutputWithExtension(ext=".out"))
class Listed(Task):
    def process(self, input, output):
        Path(output).touch()
