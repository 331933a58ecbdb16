"""`dispatch manifest --shards N -- COMMAND`: walk the input once, write the manifest.

The command is checked as `dispatch submit` checks it, planned over every item (the
task's own shards applied, done items kept: the manifest lists what exists, and each run
over it checks what is done), and written as N segments (`dispatcher.manifest`). Runs of
the same command with `--manifest FILE --shard I/N` then read segment I instead of
walking: one walk in total, however many machines run.

A manifest is the truth of when it was made: input added since is found only by
`--replan FILE`, which walks again and adds the new items as new segments (existing
segments keep their items, so shards already running or done stay right).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.errors import EXIT_OK, UsageError
from dispatcher.items import Item
from dispatcher.manifest import (
    Manifest,
    add_segments,
    fingerprint,
    read_items,
    read_manifest,
    replanning,
    run_problems,
    write_manifest,
)
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
    parser.add_argument("--shards", type=positive_int, metavar="N",
                        help="how many segments (the N of --shard I/N); with --replan, how "
                        "many to add (default: as many as hold the new items at the "
                        "manifest's mean segment size)")  # fmt: skip
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="where (default: LOG_DIR/manifests/TASK-TIME-PID.manifest)",
    )
    parser.add_argument(
        "--replan",
        metavar="FILE",
        help="walk again and add the items that FILE lacks as new segments",
    )
    return parser


def main(argv: Sequence[str], parse: Parse) -> int:
    parser = manifest_parser()
    own, words = split_command(list(argv), parser)
    args = parser.parse_args(own)
    if any(word == "--manifest" or word.startswith("--manifest=") for word in words):
        raise UsageError("manifest: the command walks the input itself: leave --manifest out")
    command = prepare_command(words, parse, "manifest")
    if args.replan is not None:
        if args.output is not None:
            raise UsageError("manifest: --replan adds to FILE itself: leave --output out")
        replanned = replan(command, read_manifest(args.replan), args.shards)
        print(os.path.abspath(args.replan))
        say_replanned(replanned)
        return EXIT_OK
    if args.shards is None:
        raise UsageError("manifest: --shards N (how many segments) is required")
    path = args.output or default_path(command)
    manifest = make_manifest(command, args.shards, path)
    print(os.path.abspath(path))
    logger.info(
        f"manifest: {manifest.items} items in {args.shards} segments of about "
        f"{-(-manifest.items // args.shards)}; run each with --manifest {path} --shard I/{args.shards}"
    )
    return EXIT_OK


def default_path(command: Command) -> str:
    # The process id too: two submissions in one second must not share (and replace) a file.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return os.path.join(command.log_dir, "manifests", f"{command.task_name}-{stamp}.manifest")


def _every_item(command: Command) -> list[Item]:
    """The walk: every item of the command in key order (its task's own shards applied)."""
    return make_plan(command.prepared.stage, command.task_shards, force=True).pending


def _groups(command: Command, items: list[Item]) -> Sequence[str] | None:
    """What a segment keeps whole (a file's row ranges), as sharding would."""
    return command.prepared.stage.source.shard_groups([key for key, _ in items])


def make_manifest(command: Command, shards: int, path: str) -> Manifest:
    """The one walk: every item of the command (its task's own shards applied), written as
    `shards` segments at `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    items = _every_item(command)
    header = {
        "task_class": command.task_name,
        "input_roots": [canonical(r) for r in command.prepared.task.input_roots()],
        "output_roots": command.output_roots,
        "fingerprint": fingerprint(command.prepared.config),
        "command": command.words,
        "cwd": command.invoked_in,
    }
    return write_manifest(path, items, len(items), shards, header, _groups(command, items))


@dataclass
class Replanned:
    manifest: Manifest
    new: int
    """Items found now that the manifest lacked, added as `added` segments."""
    gone: int
    """Items of the manifest no longer found (they stay in their segments)."""
    added: range

    @property
    def made(self) -> str:
        """When the manifest was made."""
        return str(self.manifest.header.get("made", "?"))

    @property
    def count(self) -> int:
        """The segment count once the new ones are added."""
        return self.added.stop


def replan(
    command: Command, manifest: Manifest, shards: int | None = None, write: bool = True
) -> Replanned:
    """Walk again and add what `manifest` lacks as new segments (`shards` of them, or as
    many as hold the new items at its mean segment size); existing segments are kept.
    Without `write`, only what would be added is said. One replan of a file at a time."""
    if not write:
        return _replan(command, manifest, shards, write)
    with replanning(manifest.path):
        return _replan(command, read_manifest(manifest.path), shards, write)


def _replan(command: Command, manifest: Manifest, shards: int | None, write: bool) -> Replanned:
    problems = run_problems(manifest, command.prepared.config, command.output_roots)
    if problems:
        raise UsageError(*problems)
    known = {key for key, _ in read_items(manifest)}
    items = _every_item(command)
    new = [item for item in items if item[0] not in known]
    gone = len(known) - (len(items) - len(new))
    del items, known
    before = len(manifest.segments)
    if not new:
        return Replanned(manifest, 0, gone, range(before, before))
    mean = max(1, -(-manifest.items // before))
    count = shards or -(-len(new) // mean)
    if not write:
        return Replanned(manifest, len(new), gone, range(before, before + count))
    grown = add_segments(manifest, new, len(new), count, _groups(command, new))
    return Replanned(grown, len(new), gone, range(before, before + count))


def say_replanned(replanned: Replanned) -> None:
    """One line on what a replan found (and one more on items gone since)."""
    grown, added = replanned.manifest, replanned.added
    if not replanned.new:
        logger.info(f"replan: no new items since {replanned.made}: {grown.path} is unchanged")
    else:
        segments = f"segment {added[0]}" if len(added) == 1 else f"segments {added[0]}-{added[-1]}"
        logger.info(
            f"replan: {replanned.new} new items since {replanned.made}, added as {segments}: "
            f"run them with --manifest {grown.path} --shard I/{len(grown.segments)}"
        )
    if replanned.gone:
        logger.info(
            f"replan: {replanned.gone} items of the manifest are no longer found: they stay "
            "in their segments (a run of them fails where the task cannot read them)"
        )
