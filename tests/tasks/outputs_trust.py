"""Template tasks whose outputs the trust tests check: files and folders, from a listing or a
walk, and one that ignores SIGTERM mid-write. TRUST_DELAY slows each item."""

import json
import os
import signal
import time
from pathlib import Path

from dispatcher import Task
from templates import (
    FinishWhenExists,
    InputByExtensions,
    InputFromJsonl,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)

DELAY = float(os.environ.get("TRUST_DELAY", "0"))


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Files(Task):
    def process(self, input, output):
        time.sleep(DELAY)
        with open(output, "w") as fh:
            json.dump({"input": os.path.basename(input), "pid": os.getpid()}, fh)


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputSubfolder(files={"manifest": "m.json"}),
    finish=FinishWhenExists("manifest"),
)
class Folders(Task):
    def process(self, input, output, output_manifest):
        time.sleep(DELAY)
        with open(output_manifest, "w") as fh:
            json.dump({"input": os.path.basename(input)}, fh)


@cpu_task(input_mode=InputFromJsonl(key="name"), output_mode=OutputSubfolder(files={"m": "m.txt"}))
class ListedFolders(Task):
    def process(self, output_m, **item):
        Path(output_m).write_text("x")


@cpu_task(input_mode=InputFromJsonl(key="name"), output_mode=OutputWithExtension(".json"))
class ListedFiles(Task):
    def process(self, output, **item):
        Path(output).write_text("{}")


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Stubborn(Task):
    """Ignores SIGTERM mid-write: only the SIGKILL after the grace period ends it."""

    def process(self, input, output):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        with open(output, "w") as fh:
            fh.write("half")
            fh.flush()
        Path(os.environ["TRUST_STARTED"]).touch()
        time.sleep(600)
