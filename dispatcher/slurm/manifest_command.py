"""`dispatch manifest --shards N -- COMMAND`: walk the input once, write the manifest.

The command is checked as `dispatch submit` checks it, planned over every item (the
task's own shards applied, done items kept: the manifest lists what exists, and each run
over it checks what is done), and written as N segments (`dispatcher.manifest`). Runs of
the same command with `--manifest FILE --shard I/N` then read segment I instead of
walking: one walk in total, however many machines run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from dispatcher.errors import EXIT_OK, UsageError
from dispatcher.manifest import WHOLE_FILES, Manifest, fingerprint, write_manifest
from dispatcher.plan import make_plan
from dispatcher.report.log import logger
from dispatcher.slurm.command import (
    Command,
    OwnParser,
    Parse,
    positive_int,
    prepare_command,
    split_command,
)
from dispatcher.storage.urls import canonical


def manifest_parser() -> OwnParser:
    parser = OwnParser(
        prog="dispatch manifest",
        usage="dispatch manifest --shards N [--output FILE] [--] TASK_FILE TASK_CLASS "
        "[dispatch options]",
        description="Walk the input once and write the items as N segments; runs of the "
        "same command with --manifest FILE --shard I/N read segment I instead of walking.",
    )
    parser.add_argument("--shards", type=positive_int, required=True, metavar="N",
                        help="how many segments (the N of --shard I/N)")  # fmt: skip
    parser.add_argument(
        "--output", metavar="FILE", help="where (default: LOG_DIR/manifests/TASK-TIME.manifest)"
    )
    return parser


def main(argv: Sequence[str], parse: Parse) -> int:
    parser = manifest_parser()
    own, words = split_command(list(argv), parser)
    args = parser.parse_args(own)
    if any(word == "--manifest" or word.startswith("--manifest=") for word in words):
        raise UsageError("manifest: the command walks the input itself: leave --manifest out")
    command = prepare_command(words, parse, "manifest")
    path = args.output or default_path(command)
    manifest = make_manifest(command, args.shards, path)
    print(os.path.abspath(path))
    logger.info(
        f"manifest: {manifest.items} items in {args.shards} segments of about "
        f"{-(-manifest.items // args.shards)}; run each with --manifest {path} --shard I/{args.shards}"
    )
    return EXIT_OK


def default_path(command: Command) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(command.log_dir, "manifests", f"{command.task_name}-{stamp}.manifest")


def make_manifest(command: Command, shards: int, path: str) -> Manifest:
    """The one walk: every item of the command (its task's own shards applied), written as
    `shards` segments at `path`."""
    config = command.prepared.config
    if config.get("rows_per_item") is not None:
        raise UsageError(f"manifest: --rows-per-item: {WHOLE_FILES}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    plan = make_plan(command.prepared.stage, command.task_shards, force=True)
    header = {
        "task_class": command.task_name,
        "input_roots": [canonical(r) for r in command.prepared.task.input_roots()],
        "output_roots": command.output_roots,
        "fingerprint": fingerprint(config),
        "command": command.words,
        "cwd": command.invoked_in,
    }
    return write_manifest(path, plan.pending, len(plan.pending), shards, header)
