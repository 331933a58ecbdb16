"""Template tasks whose outputs must stay under their root: from a listing (LIST names
it) into files or folders, and a walk of the input root."""

import os

from dispatcher import Task
from templates import (
    InputByExtensions,
    InputFromJsonl,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)


@cpu_task(
    input_mode=InputFromJsonl(path=os.environ.get("LIST")), output_mode=OutputWithExtension(".out")
)
class FromList(Task):
    def process(self, input, output, **item):
        with open(output, "w") as fh:
            fh.write("written")


@cpu_task(
    input_mode=InputFromJsonl(path=os.environ.get("LIST")),
    output_mode=OutputSubfolder(files={"m": "m.txt"}),
)
class Folders(Task):
    def process(self, input, output, output_m, **item):
        with open(output_m, "w") as fh:
            fh.write("written")


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
class Walked(Task):
    def process(self, input, output):
        with open(input, "rb") as src, open(output, "wb") as dst:
            dst.write(src.read())
