"""Template tasks whose process() signatures all take what their template passes."""

import shutil

from dispatcher import Task
from templates import InputByExtensions, OutputWithExtension, cpu_task

TEMPLATE = {
    "input_mode": InputByExtensions(exts=[".txt"]),
    "output_mode": OutputWithExtension(ext=".out"),
}


@cpu_task(**TEMPLATE)
class Named(Task):
    def process(self, input, output):
        shutil.copyfile(input, output)


@cpu_task(**TEMPLATE)
class WithDefault(Task):
    def process(self, input, output, extra=1):
        shutil.copyfile(input, output)


@cpu_task(**TEMPLATE)
class InputAndKwargs(Task):
    def process(self, input, **kwargs):
        shutil.copyfile(input, kwargs["output"])


@cpu_task(**TEMPLATE)
class OnlyKwargs(Task):
    def process(self, **kwargs):
        shutil.copyfile(kwargs["input"], kwargs["output"])
