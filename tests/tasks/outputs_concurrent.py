"""Template tasks that write slowly (STRESS_DELAY per quarter), for several runs at once
over one output root: files, and folders finished by a manifest."""

import os
import time
from pathlib import Path

from dispatcher import Task
from templates import (
    FinishWhenExists,
    InputByExtensions,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)

DELAY = float(os.environ.get("STRESS_DELAY", "0.02"))
SIZE = 24 * 1024


def body(data, salt=b""):
    return ((data + salt) * (SIZE // max(1, len(data)) + 1))[:SIZE]


def write_slowly(path, data):
    with open(path, "wb") as fh:
        for i in range(4):
            fh.write(data[i * SIZE // 4 : (i + 1) * SIZE // 4])
            fh.flush()
            time.sleep(DELAY)


@cpu_task(input_mode=InputByExtensions(exts=[".dat"]), output_mode=OutputWithExtension(".bin"))
class Files(Task):
    def process(self, input, output):
        write_slowly(output, body(Path(input).read_bytes()))


@cpu_task(
    input_mode=InputByExtensions(exts=[".dat"]),
    output_mode=OutputSubfolder(files={"manifest": "manifest.txt"}),
    finish=FinishWhenExists("manifest"),
)
class Folders(Task):
    def process(self, input, output, output_manifest):
        data = Path(input).read_bytes()
        for i in range(2):
            write_slowly(os.path.join(output, f"part-{i}.bin"), body(data, bytes([i])))
        with open(output_manifest, "w") as fh:
            fh.write("part-0.bin part-1.bin")
