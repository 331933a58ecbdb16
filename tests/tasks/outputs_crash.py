"""Template tasks that SIGKILL their own process group at the point CRASH_AT names
(`start:KEY`, `mid:KEY`, `written:KEY`) and write slowly (CRASH_DELAY), for the
kill-anywhere-then-rerun tests."""

import hashlib
import os
import signal
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

DELAY = float(os.environ.get("CRASH_DELAY", "0.004"))


def crash(point, input, root):
    key = os.path.relpath(input, root).replace(os.sep, "/")
    if os.environ.get("CRASH_AT") == f"{point}:{key}":
        os.killpg(os.getpgid(0), signal.SIGKILL)


def content(data, size):
    out, block = b"", data
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return out[:size]


def write_slowly(path, body, input, root, pieces=4):
    with open(path, "wb") as fh:
        step = len(body) // pieces
        for i in range(pieces):
            fh.write(body[i * step : (i + 1) * step] if i < pieces - 1 else body[i * step :])
            fh.flush()
            if i == 1:
                crash("mid", input, root)
            time.sleep(DELAY)


@cpu_task(input_mode=InputByExtensions(exts=[".dat"]), output_mode=OutputWithExtension(".bin"))
class Files(Task):
    def process(self, input, output):
        data = Path(input).read_bytes()
        crash("start", input, self.mixin.input)
        write_slowly(output, content(data, 48 * 1024), input, self.mixin.input)
        crash("written", input, self.mixin.input)


@cpu_task(
    input_mode=InputByExtensions(exts=[".dat"]),
    output_mode=OutputSubfolder(files={"manifest": "manifest.txt"}),
    finish=FinishWhenExists("manifest"),
)
class Folders(Task):
    def process(self, input, output, output_manifest):
        data = Path(input).read_bytes()
        crash("start", input, self.mixin.input)
        for i in range(3):
            write_slowly(
                os.path.join(output, f"part-{i}.bin"),
                content(data + bytes([i]), 16 * 1024),
                input,
                self.mixin.input,
                pieces=2,
            )
        with open(output_manifest, "w") as fh:
            fh.write("\n".join(sorted(os.listdir(output))))
        crash("written", input, self.mixin.input)
