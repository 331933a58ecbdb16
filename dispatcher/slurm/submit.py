"""`dispatch submit`: one SLURM array task per shard, from a dispatch command checked first.

Each array task's shard is explicit: the script exports `DISPATCH_SHARD_COUNT` and
`DISPATCH_SHARD_INDEX` (a fixed offset plus `SLURM_ARRAY_TASK_ID`) and runs
`--shard INDEX/COUNT`, never `(ID - MIN) / STEP`, so `--array=3,7,12` runs shards 3, 7
and 12 of the same N. `MaxArraySize` caps the array *index* (ids run 0..MaxArraySize-1),
so shards from MaxArraySize on go to further submissions whose offset is a multiple of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

from dispatcher.errors import EXIT_OK, UsageError
from dispatcher.report.log import logger, note
from dispatcher.slurm.command import (
    Command,
    OwnParser,
    Parse,
    positive_int,
    prepare_command,
    remembered_count,
    slurm_dir,
    split_command,
    write_submission,
)

DEFAULT_MAX_ARRAY_SIZE = 1001
"""SLURM's own default, used when `scontrol` cannot be asked (a dry run off the cluster)."""


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One submission: array ids, each running shard `offset + id`."""

    offset: int
    ids: tuple[int, ...]

    @property
    def shards(self) -> list[int]:
        return [self.offset + i for i in self.ids]


def split_shards(shards: Sequence[int], max_array_size: int) -> list[Chunk]:
    """The submissions that run `shards` when array ids must stay below `max_array_size`.

    A shard below the limit keeps its own number as its id (offset 0), so a resubmitted
    list reads as the shards it runs; shard s above goes to offset (s // limit) * limit.
    """
    if max_array_size < 1:
        raise ValueError(f"MaxArraySize must be at least 1, got {max_array_size}")
    groups: dict[int, list[int]] = {}
    for shard in sorted(set(shards)):
        offset = shard // max_array_size * max_array_size
        groups.setdefault(offset, []).append(shard - offset)
    return [Chunk(offset, tuple(ids)) for offset, ids in sorted(groups.items())]


def array_spec(ids: Sequence[int], parallel: int | None = None) -> str:
    """`--array` text for `ids`: runs of consecutive ids as ranges, `%parallel` last."""
    parts: list[str] = []
    ordered = sorted(set(ids))
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts) + (f"%{parallel}" if parallel else "")


def read_max_array_size(config_text: str) -> int | None:
    """MaxArraySize from `scontrol show config` output."""
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(match[1]) if match else None


def cluster_max_array_size() -> int | None:
    """The cluster's MaxArraySize, or None when `scontrol` is missing or does not answer."""
    if shutil.which("scontrol") is None:
        return None
    try:
        done = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return read_max_array_size(done.stdout) if done.returncode == 0 else None


SBATCH_OPTIONS = ("partition", "time", "cpus_per_task", "mem", "gres")


def sbatch_options(args: argparse.Namespace) -> list[str]:
    """The `#SBATCH` options the submit command names, then `--sbatch-arg` ones verbatim."""
    named = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in SBATCH_OPTIONS
        if getattr(args, name) is not None
    ]
    return [*named, *args.sbatch_arg]


def render_script(
    chunk: Chunk,
    count: int,
    command: Sequence[str],
    *,
    log_dir: str,
    cwd: str,
    job_name: str,
    options: Sequence[str] = (),
    parallel: int | None = None,
    requeue_before: int | None = None,
    python: str = sys.executable,
) -> str:
    """The batch script of one submission; `log_dir` and `cwd` absolute.

    `requeue_before`: SLURM sends USR1 that many seconds before the time limit; the task
    stops its dispatcher (SIGTERM: it writes its record) and requeues itself.
    """
    logs = os.path.join(slurm_dir(log_dir), "%A_%a.out")
    run = shlex.join([python, "-m", "dispatcher", *command])
    run += ' --shard "$DISPATCH_SHARD_INDEX/$DISPATCH_SHARD_COUNT"'
    lines = [
        "#!/bin/bash",
        f"# Written by dispatch submit: shards {array_spec(chunk.shards)} of {count}, "
        "one per array task (shard = offset + array task id).",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array={array_spec(chunk.ids, parallel)}",
        f"#SBATCH --output={logs}",
        f"#SBATCH --chdir={cwd}",
    ]
    if requeue_before is not None:
        lines += ["#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{requeue_before}"]
    lines += [
        *(f"#SBATCH {option}" for option in options),
        "set -euo pipefail",
        f"export DISPATCH_SHARD_COUNT={count}",
        f"export DISPATCH_SHARD_INDEX=$(({chunk.offset} + SLURM_ARRAY_TASK_ID))",
    ]
    if requeue_before is None:
        # exec: the dispatcher is the batch script's process, so SLURM's SIGTERM reaches it.
        lines.append(f"exec {run}")
    else:
        lines += requeue_lines(run)
    return "\n".join(lines) + "\n"


def requeue_lines(run: str) -> list[str]:
    """The dispatcher as this shell's child: the shell must live on to requeue the task.

    USR1 (only this shell gets it, `B:`) stops the dispatcher with one SIGTERM and marks
    the task for requeueing; SIGTERM (scancel, time limit, preemption: SLURM sends it to
    every process of the job, the dispatcher included) is not passed on again, since a
    second one would end the grace period at once.
    """
    return [
        "requeue=0",
        "trap 'requeue=1; kill -TERM \"$child\" 2>/dev/null || true' USR1",
        "trap : TERM",
        f"{run} &",
        "child=$!",
        "# A trap ends a wait early: wait again until the dispatcher itself has ended.",
        'while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done',
        'code=0; wait "$child" || code=$?',
        # JOB_TASK, never SLURM_JOB_ID: one task's job id may be the array's, whose requeue
        # would requeue every task of the array.
        'task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        'if [ "$requeue" = 1 ] && [ "$code" != 0 ]; then',
        '  echo "dispatch submit: stopped before the time limit (exit $code): requeueing $task" >&2',
        '  scontrol requeue "$task" || echo "dispatch submit: scontrol requeue $task failed" >&2',
        "fi",
        'exit "$code"',
    ]


def submit_parser() -> OwnParser:
    parser = OwnParser(
        prog="dispatch submit",
        usage="dispatch submit --array N [options] -- TASK_FILE TASK_CLASS [dispatch options]",
        description="Check the dispatch command, write an sbatch array script (one shard per "
        "array task, kept in LOG_DIR/slurm with one log per array task) and submit it.",
    )
    add = parser.add_argument
    add("--array", type=positive_int, metavar="N", help="number of shards (--shard I/N)")
    add("--parallel", type=positive_int, metavar="P", help="at most P array tasks at once (%%P)")
    add("--partition", help="sbatch --partition")
    add("--time", help="sbatch --time (time limit of each array task)")
    add("--cpus-per-task", help="sbatch --cpus-per-task")
    add("--mem", help="sbatch --mem")
    add("--gres", help="sbatch --gres (for example gpu:1)")
    add("--job-name", help="sbatch --job-name (default: dispatch-TASK_CLASS)")
    add("--sbatch-arg", action="append", default=[], metavar="ARG", help="any sbatch option")
    add("--dry-run", action="store_true", help="print the script(s); submit nothing")
    add(
        "--resubmit",
        action="store_true",
        help="only the shards with items to run and no task in the queue (N: the last "
        "submission's unless --array)",
    )
    add(
        "--no-queue-check",
        action="store_true",
        help="with --resubmit: submit the incomplete shards even when squeue cannot say "
        "which are still queued or running (they could run twice)",
    )
    add(
        "--manifest",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="walk the input once, here, into a manifest of N segments that every array "
        "task reads its items from (the default); --no-manifest: each task walks the "
        "input and keeps its hash shard",
    )
    add(
        "--replan",
        action="store_true",
        help="with --resubmit: walk again, add the items the array's manifest lacks as new "
        "shards, and submit them with the incomplete ones",
    )
    add(
        "--requeue",
        action="store_true",
        help="before the time limit, stop and requeue the array task; it resumes its shard",
    )
    add(
        "--requeue-before",
        type=positive_int,
        default=120,
        metavar="SECONDS",
        help="with --requeue: how long before the time limit SLURM warns (USR1; default 120)",
    )
    return parser


def _joined_sbatch_args(words: list[str]) -> list[str]:
    """`--sbatch-arg --qos=high` as `--sbatch-arg=--qos=high` (argparse refuses values
    that look like options)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "--sbatch-arg" and i + 1 < len(words):
            out.append(f"--sbatch-arg={words[i + 1]}")
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def sbatch(script: str, dependency: str | None) -> str:
    """Submit `script`; its job id."""
    cmd = ["sbatch", "--parsable"]
    if dependency:
        cmd.append(f"--dependency=afterany:{dependency}")
    try:
        done = subprocess.run([*cmd, script], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UsageError("submit: sbatch is not on PATH (--dry-run shows the scripts)") from None
    if done.returncode != 0:
        raise UsageError(f"submit: sbatch {script} failed: {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]


def main(argv: Sequence[str], parse: Parse) -> int:
    """`dispatch submit ...`: check everything, write the scripts, submit, print job ids."""
    parser = submit_parser()
    own, words = split_command(list(argv), parser)
    args = parser.parse_args(_joined_sbatch_args(own))
    command = _checked_command(args, words, parse)
    count = args.array or remembered_count(command, "submit")
    shards = _shards_to_submit(args, command, count)
    manifest = None
    if args.replan:
        count, added, manifest = _replan(args, command, count)
        shards = sorted({*shards, *added})
    if not shards:
        print(f"dispatch: submit --resubmit: nothing to submit: all {count} shards are "
              "complete or still queued")  # fmt: skip
        return EXIT_OK
    manifest = manifest or _array_manifest(args, command, count)
    if manifest is not None and command.prepared.manifest is None:  # tasks read it too
        words = [*words, "--manifest", manifest]
    limit = cluster_max_array_size()
    if limit is None:
        limit = DEFAULT_MAX_ARRAY_SIZE
        note(f"scontrol does not answer: MaxArraySize taken as {limit}")
    chunks = split_shards(shards, limit)
    log_dir = os.path.abspath(command.log_dir)
    scripts = [
        render_script(
            chunk,
            count,
            words,
            log_dir=log_dir,
            cwd=command.invoked_in,
            job_name=args.job_name or f"dispatch-{command.task_name}",
            options=sbatch_options(args),
            parallel=args.parallel,
            requeue_before=args.requeue_before if args.requeue else None,
        )
        for chunk in chunks
    ]
    # A throttle holds across the submissions: each waits for the previous one to end.
    chained = args.parallel is not None and len(chunks) > 1
    if args.dry_run:
        for i, text in enumerate(scripts):
            after = " --dependency=afterany:<previous job>" if chained and i else ""
            print(f"# sbatch{after} (submission {i + 1} of {len(scripts)})")
            print(text, end="")
        return EXIT_OK
    return _submit(command, count, chunks, scripts, log_dir, chained, manifest)


def _checked_command(args: argparse.Namespace, words: list[str], parse: Parse) -> Command:
    """The dispatch command to submit, once `submit`'s own options agree with it."""
    if args.array is None and not args.resubmit:
        raise UsageError("submit: --array N (the number of shards) is required")
    if args.no_queue_check and not args.resubmit:
        raise UsageError("submit: --no-queue-check only applies to --resubmit")
    if args.replan and not args.resubmit:
        raise UsageError(
            "submit: --replan adds new input to a submitted array: give it with --resubmit"
        )
    command = prepare_command(words, parse, "submit")
    if args.requeue and command.grace >= args.requeue_before:
        raise UsageError(
            f"submit: --grace {command.grace:g} must be shorter than --requeue-before "
            f"{args.requeue_before}: the items in flight would still run at the time limit"
        )
    return command


def _array_manifest(args: argparse.Namespace, command: Command, count: int) -> str | None:
    """The manifest every array task reads its items from, if any: the command's own
    `--manifest`, the last submission's (`--resubmit`), or one written now (`--manifest`:
    the one walk; a dry run only says where it would go)."""
    given = command.prepared.manifest
    if given is not None:
        if len(given.segments) != count:
            raise UsageError(
                f"submit: --array {count}: --manifest {given.path} has {len(given.segments)} "
                f"segments: give --array {len(given.segments)}"
            )
        return os.path.abspath(given.path)
    if args.resubmit:
        from dispatcher.slurm.status import array_manifest

        earlier = array_manifest(command, count)
        return os.path.abspath(earlier.path) if earlier is not None else None
    if not args.manifest:
        return None
    from dispatcher.slurm.manifest_command import default_path, make_manifest

    path = os.path.abspath(default_path(command))
    if args.dry_run:
        note(f"submit --dry-run: the manifest would be written to {path} (nothing is written)")
        return path
    logger.info(
        f"submit: walking the input once, into a manifest of {count} segments that the "
        "array tasks read (--no-manifest: each walks it instead)"
    )
    made = make_manifest(command, count, path)
    note(f"manifest {path}: {made.items} items in {count} segments")
    return path


def _replan(args: argparse.Namespace, command: Command, count: int) -> tuple[int, list[int], str]:
    """(the array's shard count once the input found since its manifest was made is added
    to it as new segments, those segments' shards, the manifest); a dry run writes nothing."""
    from dispatcher.slurm.manifest_command import replan, say_replanned
    from dispatcher.slurm.status import array_manifest

    manifest = array_manifest(command, count)
    if manifest is None:
        raise UsageError(
            f"submit --replan: the array of {count} shards reads no manifest (submitted with "
            "--no-manifest: each of its tasks walks the input and finds new items itself)"
        )
    replanned = replan(command, manifest, write=not args.dry_run)
    say_replanned(replanned)
    if args.dry_run and replanned.new:
        note("submit --dry-run: the manifest is left as it was (nothing is written)")
    return replanned.count, list(replanned.added), os.path.abspath(manifest.path)


def _shards_to_submit(args: argparse.Namespace, command: Command, count: int) -> list[int]:
    """Every shard; with `--resubmit`, only those with items to run and not queued."""
    if not args.resubmit:
        return list(range(count))
    from dispatcher.slurm.status import array_of, resubmittable

    array = array_of(command, count)
    shards, notes = resubmittable(command, array, queue_check=not args.no_queue_check)
    for text in notes:
        note(text)
    return shards


def _submit(
    command: Command,
    count: int,
    chunks: list[Chunk],
    scripts: list[str],
    log_dir: str,
    chained: bool,
    manifest: str | None,
) -> int:
    folder = slurm_dir(log_dir)
    os.makedirs(folder, exist_ok=True)  # SLURM does not create --output folders
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    jobs: list[dict] = []
    previous = None
    for i, (chunk, text) in enumerate(zip(chunks, scripts, strict=True)):
        path = os.path.join(folder, f"submit-{stamp}-{i}.sh")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            job = sbatch(path, previous if chained else None)
        except UsageError as exc:
            if jobs:
                _remember(command, count, jobs, manifest)
                exc.messages.append(
                    f"submitted before it: jobs {', '.join(j['job'] for j in jobs)}"
                )
            raise
        previous = job
        jobs.append({"job": job, "offset": chunk.offset, "ids": list(chunk.ids), "script": path})
        print(
            f"submitted job {job}: shards {array_spec(chunk.shards)} of {count} "
            f"(array {array_spec(chunk.ids)}), logs {os.path.join(folder, job)}_*.out"
        )
    _remember(command, count, jobs, manifest)
    return EXIT_OK


def _remember(command: Command, count: int, jobs: list[dict], manifest: str | None) -> None:
    record: dict = {"shard_count": count, "jobs": jobs}
    if manifest is not None:
        record["manifest"] = manifest
    write_submission(command, record)
