"""A template task whose process() requires a parameter nothing passes (and misses one
that its template passes)."""

import shutil

from dispatcher import Task
from templates import InputByExtensions, OutputSubfolder, cpu_task


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputSubfolder(files={"txt": "a.txt"})
)
class Copy(Task):
    def process(self, input, output, output_text):
        given = dict(locals())
        given.update(given.pop("kwargs", {}))
        shutil.copyfile(given["input"], given["output"])
