"""Template tasks (files, folders) a test only plans, through a link out of the output
root; never run."""

from dispatcher import Task
from templates import InputByExtensions, OutputSubfolder, OutputWithExtension, cpu_task


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
class File(Task):
    def process(self, input, output):
        raise AssertionError("never run")


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputSubfolder(files={"m": "m.txt"})
)
class Folder(Task):
    def process(self, input, output, output_m):
        raise AssertionError("never run")
