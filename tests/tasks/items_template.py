"""A template task (files of a walk, one .json output each) the per-item path tests
prepare and stage outputs for."""

from pathlib import Path

from dispatcher import Placeholder, Task
from templates import InputByExtensions, OutputWithExtension, cpu_task


@cpu_task(
    input=Placeholder(str),
    output=Placeholder(str),
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(".json"),
)
class T(Task):
    def process(self, input, output):
        Path(output).write_text("new")
