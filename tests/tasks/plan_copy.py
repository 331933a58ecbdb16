"""Template tasks the plan tests run over a walk of .txt files: a copy (MARK appended),
one with an index shard of its own, one writing folders, and one that fails every item
under c/ while FAIL is set."""

import os
from pathlib import Path

from dispatcher import IndexShard, Placeholder, Task
from templates import InputByExtensions, OutputSubfolder, OutputWithExtension, cpu_task


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
class Copy(Task):
    def process(self, input, output):
        with open(input) as src, open(output, "w") as dst:
            dst.write(src.read() + os.environ.get("MARK", ""))


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(".out"),
    shard=IndexShard(shard_idx=Placeholder(int, default=0), shard_num=2),
)
class Half(Task):
    def process(self, input, output):
        with open(output, "w") as dst:
            dst.write("half")


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputSubfolder(files={"m": "m.txt"})
)
class Folder(Task):
    def process(self, input, output, output_m):
        with open(output_m, "w") as fh:
            fh.write(Path(input).read_text())


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
class Flaky(Task):
    def process(self, input, output):
        if "c/" in input and os.environ.get("FAIL"):
            raise ValueError("not today")
        with open(output, "w") as fh:
            fh.write("ok")
