"""A `--cfg` printed in another folder runs in that folder.

`--print-config` writes values as they were typed (`input: data` stays `data`, invariant
12), so a relative root or a relative model path means the folder the run was printed in,
which the document names (`cwd:`). Replayed from anywhere else, the run changes into that
folder before the task is built: every relative value, root or not, means the files it
meant, and no value's text is rewritten (which value is a path is the task's business).
URLs and absolute paths are untouched by construction. What this command line itself
names by a relative path (the task file, `--log-dir`) was meant from where it was typed,
so it is made absolute first; `--mixin` values join the document and are read with it.
"""

from __future__ import annotations

import os

from dispatcher.errors import UsageError
from dispatcher.report.log import logger
from dispatcher.runner.request import Request


def enter_printed_folder(request: Request, printed_in: str | None, own_task_file: bool) -> None:
    """Change into `printed_in` (the document's `cwd:`) when it is not the current folder.

    `own_task_file`: the task file came from this command line, not from the document.
    """
    here = os.getcwd()
    request.invoked_in = here
    if printed_in is None or os.path.realpath(printed_in) == os.path.realpath(here):
        return
    if not os.path.isdir(printed_in):
        raise UsageError(
            f"--cfg was printed in {printed_in}, which is not a folder here, so its relative "
            "paths name nothing: run where they name the same files, or delete its cwd: line"
        )
    if own_task_file and request.task_file:
        request.task_file = os.path.abspath(request.task_file)
    if "log_dir" in request.given:
        request.log_dir = os.path.abspath(request.log_dir)
    os.chdir(printed_in)
    logger.info(
        f"--cfg was printed in {printed_in}: the run works there, so its relative paths name "
        "what they named then"
    )
