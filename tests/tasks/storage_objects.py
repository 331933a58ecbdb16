"""Template tasks for object-store roots: one file per input, and one folder per input
whose manifest is its finish marker; each writes slowly (STORE_DELAY seconds per piece)
so a kill lands mid-item, and every byte is a function of the input's bytes alone."""

import os
import time
from pathlib import Path

from outputs_crash import content  # every byte a function of the input

from dispatcher import Task
from templates import (
    FinishWhenExists,
    InputByExtensions,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)

DELAY = float(os.environ.get("STORE_DELAY", "0"))


def write_slowly(path: str, body: bytes, pieces: int = 4) -> None:
    with open(path, "wb") as fh:
        step = len(body) // pieces
        for i in range(pieces):
            fh.write(body[i * step : (i + 1) * step] if i < pieces - 1 else body[i * step :])
            fh.flush()
            time.sleep(DELAY)


@cpu_task(input_mode=InputByExtensions(exts=[".dat"]), output_mode=OutputWithExtension(".bin"))
class Files(Task):
    def process(self, input, output):
        write_slowly(output, content(Path(input).read_bytes(), 48 * 1024))


@cpu_task(
    input_mode=InputByExtensions(exts=[".dat"]),
    output_mode=OutputSubfolder(files={"manifest": "manifest.txt"}),
    finish=FinishWhenExists("manifest"),
)
class Folders(Task):
    def process(self, input, output, output_manifest):
        data = Path(input).read_bytes()
        for i in range(3):
            write_slowly(
                os.path.join(output, f"part-{i}.bin"), content(data + bytes([i]), 16 * 1024), 2
            )
        with open(output_manifest, "w") as fh:
            fh.write("\n".join(sorted(os.listdir(output))))


@cpu_task(input_mode=InputByExtensions(exts=[".dat"]), output_mode=OutputSubfolder())
class WholeFolders(Task):
    """Done when the folder itself exists: in a store, when its commit marker does."""

    def process(self, input, output):
        Path(output, "copy.dat").write_bytes(Path(input).read_bytes())


@cpu_task(input_mode=InputByExtensions(exts=[".dat"]), output_mode=OutputWithExtension(".url"))
class Urls(Task):
    """Asks for each input's URL instead of a local copy."""

    input_as_url = True

    def process(self, input, output):
        Path(output).write_text(input)
