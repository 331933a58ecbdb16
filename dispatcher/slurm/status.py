"""`dispatch status`: per shard, items / done / to run, planned from the outputs, with the
last run's outcome from its run record and the queue state from `squeue`.

The counts come from the outputs alone, so they are right when records are missing (a
task killed before writing one, a cleaned log directory); records and the queue only add
what happened to each shard's last attempt.
"""

from __future__ import annotations

import getpass
import glob
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import EXIT_OK, UsageError
from dispatcher.manifest import Manifest, read_items, read_manifest, run_problems
from dispatcher.plan import make_plan
from dispatcher.report.liveness import shown_outcome
from dispatcher.report.log import logger
from dispatcher.sharding import hash_bucket
from dispatcher.slurm.command import (
    Command,
    OwnParser,
    Parse,
    positive_int,
    prepare_command,
    remembered_count,
    split_command,
    submissions,
)
from dispatcher.slurm.shard_row import Records, ShardRow


def shard_numbers(keys: Sequence[str], count: int, mode: str) -> list[int]:
    """The `--shard I/count` each key (in sorted order) belongs to, as the run computes it."""
    if mode == "index":
        return [i % count for i in range(len(keys))]
    return [hash_bucket(key, count) for key in keys]


def array_manifest(command: Command, count: int) -> Manifest | None:
    """The manifest the array's tasks read: the command's own `--manifest`, else the one
    the last submission of N shards wrote (`dispatch submit`; N may be a count it had
    before a replan added segments)."""
    if command.prepared.manifest is not None:
        return command.prepared.manifest
    for record in reversed(submissions(command)):
        path = record.get("manifest")
        if not path:
            if record.get("shard_count") == count:
                return None  # the newest array of N walked
            continue
        manifest = read_manifest(path)
        if count in manifest.counts or record.get("shard_count") == count:
            problems = run_problems(manifest, command.prepared.config, command.output_roots)
            if problems:
                raise UsageError(*problems)
            return manifest
    return None


@dataclass(frozen=True)
class Array:
    """The array that `status` and `--resubmit` look at, resolved once: its shard count,
    and the manifest its tasks read (None: each task walks the input)."""

    count: int
    manifest: Manifest | None

    @property
    def counts(self) -> list[int]:
        """Every shard count it has had: shard I is the same segment under each."""
        return self.manifest.counts if self.manifest is not None else [self.count]


def array_of(command: Command, count: int) -> Array:
    """The array of `count` shards of `command`; refused when its manifest has grown to
    another count (a replan added segments)."""
    manifest = array_manifest(command, count)
    if manifest is not None and len(manifest.segments) != count:
        raise UsageError(
            f"--array {count}: the array's manifest {manifest.path} has "
            f"{manifest.counts_text()}: give --array {len(manifest.segments)} (or leave "
            "--array out)"
        )
    return Array(count, manifest)


def count_shards(command: Command, array: Array) -> list[ShardRow]:
    """Items and done items of each shard: every item, each with its shard, and one done
    check. The items are the manifest's, read segment by segment, when the array reads
    one; else one plan over the input, each key's shard as the run computes it."""
    if array.manifest is not None:
        manifest = array.manifest
        items = read_items(manifest)
        shards = [n for n, segment in enumerate(manifest.segments) for _ in range(segment.count)]
    else:
        items = make_plan(command.prepared.stage, command.task_shards, force=True).pending
        keys = [key for key, _ in items]
        shards = shard_numbers(keys, array.count, command.shard_mode)
    done = list(command.prepared.stage.source.done_mask(items))
    rows = [ShardRow(i) for i in range(array.count)]
    for shard, is_done in zip(shards, done, strict=True):
        rows[shard].items += 1
        rows[shard].done += bool(is_done)
    return rows


_SHARD = re.compile(r"^(hash|index) (\d+)/(\d+)$")


def last_records(command: Command, array: Array) -> Records:
    """Each shard's newest run record over these outputs (run folders sort by time)."""
    counts = array.counts
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    pattern = os.path.join(command.log_dir, command.task_name, "*", "run.json")
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("output_roots") != command.output_roots:
            continue
        shard = str(record.get("config", {}).get("shard", ""))
        match = _SHARD.match(shard)
        if match and match[1] == command.shard_mode and int(match[3]) in counts:
            found[int(match[2])] = (path, record)
        elif shard == "all" and array.count == 1:  # a run of every item is the one shard of one
            found[0] = (path, record)
    return found


def queued(command: Command, array: Array) -> dict[int, str] | None:
    """Shard -> queue state of the array tasks of earlier submissions still in `squeue`;
    None when squeue cannot be asked."""
    offsets = {
        str(job["job"]): int(job["offset"])
        for record in submissions(command)
        if record.get("shard_count") in array.counts
        for job in record.get("jobs", [])
    }
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%F|%K|%T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    states: dict[int, str] = {}
    for line in done.stdout.splitlines():
        job, _, rest = line.strip().partition("|")
        task, _, state = rest.partition("|")
        if job in offsets and task.isdigit():
            states[offsets[job] + int(task)] = state
    return states


def status_rows(
    command: Command, array: Array, records: Records | None = None
) -> tuple[list[ShardRow], bool]:
    """(rows, whether squeue answered); `records`: the shards' last run records, when the
    caller has read them already."""
    rows = count_shards(command, array)
    if records is None:
        records = last_records(command, array)
    for shard, (path, record) in records.items():
        row = rows[shard]
        row.record, row.outcome, row.exit_code = (
            path,
            shown_outcome(record),
            record.get("exit_code"),
        )
        slurm = record.get("slurm") or {}
        if slurm:
            row.job = f"{slurm.get('array_job')}_{slurm.get('array_task')}"
    states = queued(command, array)
    for shard, state in (states or {}).items():
        if shard < array.count:
            rows[shard].queue = state
    return rows, states is not None


def resubmittable(
    command: Command, array: Array, queue_check: bool = True
) -> tuple[list[int], list[str]]:
    """(shards with items to run and no array task in the queue, notes on the others).

    Without an answer from squeue a shard still queued or running looks incomplete, and
    submitting it again could run it twice: refused unless `queue_check` is off.
    """
    rows, answered = status_rows(command, array)
    incomplete = [row for row in rows if row.to_run]
    notes = []
    if not answered:
        if queue_check:
            raise UsageError(
                "submit --resubmit: the queue could not be asked (squeue gave no answer), so "
                "shards still queued or running would be submitted again and could run twice; "
                "pass --no-queue-check to submit every incomplete shard anyway"
            )
        notes.append("--no-queue-check: the incomplete shards are not checked against the queue")
    waiting = [row.shard for row in incomplete if row.queue]
    if waiting:
        notes.append(
            f"shards {', '.join(map(str, waiting))} are still queued or running: "
            "not submitted again"
        )
    return [row.shard for row in incomplete if not row.queue], notes


def status_parser() -> OwnParser:
    parser = OwnParser(
        prog="dispatch status",
        usage="dispatch status [--array N] [--json] [--html FILE] [--] TASK_FILE TASK_CLASS "
        "[dispatch options]",
        description="Per shard: items, done and to run (from the outputs), the last run's "
        "outcome and exit code (from its run record), the queue state (from squeue).",
    )
    parser.add_argument(
        "--array", type=positive_int, metavar="N", help="shard count (default: the last submit's)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained status page: progress, throughput over time, "
        "failures by kind, the commands to resubmit",
    )
    return parser


def _html_problem(path: str) -> str | None:
    """Why the page cannot be written at `path`, checked before anything is counted."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--html {path}: is a folder; give a file name (status.html)"
    if not os.path.isdir(folder):
        return f"--html {path}: no folder {folder} to write it in"
    if not os.access(folder, os.W_OK):
        return f"--html {path}: the folder {folder} is not writable"
    return None


def _table(rows: list[ShardRow], squeue: bool) -> str:
    head = f"{'shard':>5} {'items':>7} {'done':>7} {'to run':>7}  {'exit':>4}  {'job':<14} {'queue':<10} last run"
    lines = [head]
    for r in rows:
        code = "-" if r.exit_code is None else str(r.exit_code)
        queue = r.queue or ("-" if squeue else "?")
        lines.append(
            f"{r.shard:>5} {r.items:>7} {r.done:>7} {r.to_run:>7}  {code:>4}  "
            f"{r.job or '-':<14} {queue:<10} {r.outcome or '(no record)'}"
        )
    items, done = sum(r.items for r in rows), sum(r.done for r in rows)
    lines.append(f"{'total':>5} {items:>7} {done:>7} {items - done:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str], parse: Parse) -> int:
    """`dispatch status [--array N] [--json] [--] DISPATCH COMMAND`."""
    parser = status_parser()
    own, words = split_command(list(argv), parser)
    args = parser.parse_args(own)
    page = os.path.abspath(args.html) if args.html else None
    problem = _html_problem(args.html) if args.html else None
    if problem:
        raise UsageError(problem)
    command = prepare_command(words, parse, "status")
    count = args.array or remembered_count(command, "status")
    array = array_of(command, count)
    manifest = array.manifest
    records = last_records(command, array)
    rows, squeue = status_rows(command, array, records)
    complete = sum(1 for r in rows if not r.to_run)
    if page is not None:
        from dispatcher.outputs import atomic_write
        from dispatcher.slurm.status_page import status_page

        text = status_page(command, count, rows, records, squeue, manifest)
        with atomic_write(page) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        logger.info(f"status page {page}")
    if args.json:
        totals = {
            "items": sum(r.items for r in rows),
            "done": sum(r.done for r in rows),
            "to_run": sum(r.to_run for r in rows),
            "complete_shards": complete,
        }
        shown = {"shard_count": count, "shards": [r.as_dict() for r in rows], "totals": totals}
        if manifest is not None:
            shown["manifest"] = {
                "path": os.path.abspath(manifest.path),
                "made": manifest.header.get("made"),
                "items": manifest.items,
                "counts": manifest.counts,
                "replans": manifest.replans,
            }
        print(json.dumps(shown, indent=1))
        return EXIT_OK
    print(_table(rows, squeue))
    logger.info(f"{complete} of {count} shards complete", extra={"bare": True})
    if manifest is not None:
        logger.info(_manifest_line(manifest), extra={"bare": True})
    return EXIT_OK


def _manifest_line(manifest: Manifest) -> str:
    """Where the items were counted from, and what that leaves out."""
    made = manifest.header.get("made", "?")
    last = f", segments last added {manifest.replans[-1]}" if manifest.replans else ""
    return (
        f"items from the manifest {manifest.path} (made {made}{last}): input added since "
        "is counted once dispatch submit --resubmit --replan adds it"
    )
