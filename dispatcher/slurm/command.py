"""What `dispatch submit` and `dispatch status` share: their own options, the dispatch
command they carry, checked as a run would check it, and the submissions they remember.

A submission is remembered as one JSON file in `LOG_DIR/slurm/` (the shard count, the
shard mode, the output roots and the jobs with their shards), so that `status` and
`submit --resubmit` know N without being told it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dispatcher.errors import UsageError
from dispatcher.runner.preparation import Prepared, prepare
from dispatcher.runner.request import Request
from dispatcher.storage.urls import canonical

SLURM_FOLDER = "slurm"
"""Below the log directory: sbatch scripts, array task logs, submission records."""


class OwnParser(argparse.ArgumentParser):
    """argparse whose mistakes are one `dispatch: error:` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('dispatch ')}: {message}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def split_command(
    argv: Sequence[str], parser: argparse.ArgumentParser
) -> tuple[list[str], list[str]]:
    """(own options, dispatch command): split at `--`, or where the own options end.

    Without `--`, the leading words that are this parser's options (and their values) are
    its own; the first other word starts the dispatch command.
    """
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    takes_value = {
        s: action.nargs != 0 for action in parser._actions for s in action.option_strings
    }
    i = 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name not in takes_value:
            break
        i += 2 if takes_value[name] and "=" not in argv[i] else 1
    return argv[:i], argv[i:]


@dataclasses.dataclass
class Command:
    """The dispatch command an array task runs, checked; `prepared` has no backbone built."""

    words: list[str]
    prepared: Prepared
    shard_mode: str
    log_dir: str
    task_name: str
    grace: float
    invoked_in: str
    """Where the command was typed: its words (a relative `--cfg`) mean paths there, even
    when a replayed `--cfg` made the check run in the folder it was printed in."""

    @property
    def output_roots(self) -> list[str]:
        return [canonical(root) for root in self.prepared.task.output_roots()]

    @property
    def task_shards(self) -> list:
        """The task's own shards (declared, hard), inside which `--shard I/N` selects."""
        return self.prepared.shards[:-1]


Parse = Callable[[list[str]], Request]
"""The command line's parser (`dispatcher.cli.parse_command_line`), passed in: no cycle."""


def prepare_command(words: list[str], parse: Parse, verb: str) -> Command:
    """Check the dispatch command as every array task will run it.

    Every configuration error is raised here, together, before anything is submitted;
    no device is looked for (a login node has none) and no install script runs. The
    shard is checked as one shard of one: each array task's `--shard I/N` is valid by
    construction, and the task's own shards come before it.
    """
    if not words:
        raise UsageError(f"{verb}: no dispatch command: give -- TASK_FILE TASK_CLASS [options]")
    request = parse(words)
    problems = []
    if request.help or request.plan_only or request.print_config:
        problems.append(f"{verb}: -h, -hb, -hk, --plan and --print-config are not submitted")
    if request.shard is not None:
        problems.append(
            f"{verb}: --shard is chosen per array task (--array N gives the count); "
            "leave it out of the dispatch command"
        )
    shard_mode = request.shard_mode  # the command line's, before a --cfg file's fills in
    request.shard = "0/1"
    request.submitting = True
    try:
        prepared = prepare(request)
    except UsageError as exc:
        raise UsageError(*problems, *exc.messages) from None
    if problems:
        raise UsageError(*problems)
    name = type(prepared.task).__name__
    return Command(
        words,
        prepared,
        shard_mode,
        request.log_dir,
        name,
        float(request.grace),
        request.invoked_in or os.getcwd(),
    )


def slurm_dir(log_dir: str) -> str:
    return os.path.join(log_dir, SLURM_FOLDER)


def write_submission(command: Command, record: dict[str, Any]) -> str:
    """Remember a submission (its jobs, N, the outputs) for `status` and `--resubmit`."""
    folder = slurm_dir(command.log_dir)
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(folder, f"submit-{stamp}-{os.getpid()}.json")
    body = {
        "task_class": command.task_name,
        "output_roots": command.output_roots,
        "shard_mode": command.shard_mode,
        "command": command.words,
        "cwd": command.invoked_in,
        **record,
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=1)
    os.replace(tmp, path)
    return path


def submissions(command: Command) -> list[dict[str, Any]]:
    """Earlier submissions over the same outputs and task class, oldest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(slurm_dir(command.log_dir), "submit-*.json"))):
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue
        if (
            isinstance(record, dict)
            and record.get("output_roots") == command.output_roots
            and record.get("task_class") == command.task_name
            and record.get("shard_mode") == command.shard_mode
        ):
            found.append(record)
    return found


def remembered_count(command: Command, verb: str) -> int:
    """N of the last submission over this command's outputs (for a command without --array)."""
    earlier = submissions(command)
    if not earlier:
        raise UsageError(
            f"{verb}: no earlier dispatch submit of {command.task_name} over these outputs in "
            f"{slurm_dir(command.log_dir)}: give --array N"
        )
    return int(earlier[-1]["shard_count"])
