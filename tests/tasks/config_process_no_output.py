"""A template task whose process() cannot take the output its template passes."""

import shutil

from dispatcher import Task
from templates import InputByExtensions, OutputWithExtension, cpu_task


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(ext=".out"))
class Copy(Task):
    def process(self, input):
        given = dict(locals())
        given.update(given.pop("kwargs", {}))
        shutil.copyfile(given["input"], given["output"])
