"""Small tasks the command-line tests run: one that fails an item, a template task, one
that declares no mixin."""

import shutil

from dispatcher import Placeholder, Task
from templates import InputByExtensions, OutputWithExtension, cpu_task


class Flaky(Task):
    """Item 2 of 4 raises."""

    def generate_tasks(self):
        return [{"i": i} for i in range(4)]

    def process(self, i):
        if i == 2:
            raise ValueError("item two is bad")


@cpu_task(
    input=Placeholder(str),
    output=Placeholder(str),
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(".out"),
)
class Copy(Task):
    """Copies each .txt input to <name>.txt.out."""

    def process(self, input, output):
        shutil.copyfile(input, output)


class Bare(Task):
    """One item, no mixin declared."""

    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        pass
