"""Real SLURM array jobs running `dispatch --shard auto`: shards, preemption, resubmission.

These submit to a running cluster (`bash scripts/local-slurm.sh start`; CI starts one)
and are skipped when there is none. Each array task `exec`s the dispatcher, as
tasks/slurm/job.sh does, so SLURM's SIGTERM reaches it directly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from conftest import REPO, task_file
from test_slurm_submit import needs_cluster

from dispatcher.sharding import hash_bucket

JOB_TIMEOUT = 60.0  # seconds one array job may take before the test cancels it and fails


pytestmark = [pytest.mark.slow, needs_cluster]


class Cluster:
    """Submits array jobs under one test's tmp_path and cancels whatever is left at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        # The job finds this interpreter's `dispatch` script first (job.sh calls it by name).
        self.env["PATH"] = sysconfig.get_path("scripts") + os.pathsep + self.env.get("PATH", "")

    def submit(self, script: Path, array: str, *args: str, chdir: Path | None = None) -> str:
        logs = self.root / "slurm"
        logs.mkdir(exist_ok=True)
        cmd = [
            "sbatch", "--parsable", f"--array={array}", "--job-name=dispatch-test",
            f"--chdir={chdir or self.root}", f"--output={logs}/%A_%a.out", "--time=5",
            str(script), *args,
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=30)
        assert done.returncode == 0, f"sbatch failed: {done.stderr}"
        job = done.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def queued(self, job: str) -> bool:
        """Whether any task of the job is still pending or running."""
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True, timeout=30
        ).stdout
        return bool(out.strip())

    def wait(self, job: str, timeout: float = JOB_TIMEOUT) -> float:
        """Poll squeue until the job has left it; returns the seconds waited."""
        start = time.monotonic()
        while self.queued(job):
            if time.monotonic() - start > timeout:
                subprocess.run(["scancel", job], timeout=30)
                pytest.fail(f"array job {job} still queued after {timeout:.0f}s\n{self.logs()}")
            time.sleep(0.2)
        return time.monotonic() - start

    def states(self, job: str) -> dict[int, tuple[str, int]]:
        """Array task id -> (final JobState, exit code of the batch script), from scontrol."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30
        ).stdout
        states = {}
        for line in out.splitlines():
            task = re.search(r"\bArrayTaskId=(\d+)\b", line)
            state = re.search(r"\bJobState=(\w+)", line)
            code = re.search(r"\bExitCode=(\d+):(\d+)", line)
            if task and state and code:
                states[int(task[1])] = (state[1], int(code[1]))
        return states

    def log(self, job: str, task: int) -> str:
        return (self.root / "slurm" / f"{job}_{task}.out").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(self.root.glob("slurm/*")))

    def cancel_leftovers(self) -> None:
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True, timeout=30)


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    yield c
    c.cancel_leftovers()


@pytest.fixture
def stamp_job(tmp_path: Path) -> Path:
    """A batch script that `exec`s the dispatcher over the Stamp task; sbatch ARGS go to it."""
    argv = [
        sys.executable, "-m", "dispatcher", str(task_file("slurm_array_stamp")), "Stamp",
        "--backbone", "serial", "--shard", "auto", "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"output={tmp_path / 'out'}", f"journal={tmp_path / 'journal.jsonl'}",
    ]  # fmt: skip
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\nexec " + shlex.join(argv) + ' "$@"\n')
    return script


def journal(tmp_path: Path) -> list[dict]:
    """Complete journal lines (a line being appended while we read is left for later)."""
    path = tmp_path / "journal.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in lines]


def outputs(tmp_path: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}


def record_named_in(log: str) -> dict:
    """The run.json a dispatcher run named in its last lines."""
    paths = re.findall(r"run record (\S+)", log)
    assert paths, f"no run record in the job's log:\n{log}"
    return json.loads(Path(paths[-1]).read_text())


@pytest.mark.parametrize("first,last", [(0, 3), (5, 7)], ids=["array-0-3", "array-5-7"])
def test_array_shards_cover_every_item_once(cluster, stamp_job, tmp_path, first, last):
    items = 12
    started = time.monotonic()
    job = cluster.submit(stamp_job, f"{first}-{last}", f"count={items}")
    cluster.wait(job)
    print(f"array {first}-{last}: {time.monotonic() - started:.1f}s from sbatch to done")

    task_ids = list(range(first, last + 1))
    assert cluster.states(job) == {t: ("COMPLETED", 0) for t in task_ids}, cluster.logs()
    names = {f"item-{i:03d}" for i in range(items)}
    made = outputs(tmp_path)
    assert set(made) == names
    lines = journal(tmp_path)
    assert sorted(r["name"] for r in lines) == sorted(names), "an item was processed twice"
    # --shard auto: array task t runs hash shard (t - SLURM_ARRAY_TASK_MIN) of the count.
    count = len(task_ids)
    for record in lines:
        assert record["task"] == first + hash_bucket(record["name"], count), record
        assert record["job"] == job
        assert made[record["name"]] == record
    # One process per array task; each that had work said so once, with its own pid.
    for task in task_ids:
        log = cluster.log(job, task)
        mine = {r["pid"] for r in lines if r["task"] == task}
        announced = re.findall(rf"stamp: process (\d+) is array task {task}\b", log)
        assert {int(p) for p in announced} == mine and len(announced) == len(mine), log
        assert "dispatch: " in log  # every task ends with the dispatcher's own summary


def test_cancelled_array_exits_143_and_resubmission_finishes(cluster, stamp_job, tmp_path):
    items, delay = 12, 0.5
    args = (f"count={items}", f"delay={delay}")
    buckets = [sum(hash_bucket(f"item-{i:03d}", 2) == b for i in range(items)) for b in (0, 1)]
    assert min(buckets) >= 4, f"each shard needs several slow items, got {buckets}"

    job = cluster.submit(stamp_job, "0-1", *args)
    # Cancel each array task (SIGTERM, as a time limit or preemption) after its first item.
    pending = {0, 1}
    deadline = time.monotonic() + JOB_TIMEOUT
    while pending and time.monotonic() < deadline:
        for task in {r["task"] for r in journal(tmp_path)} & pending:
            subprocess.run(["scancel", f"{job}_{task}"], check=True, timeout=30)
            pending.discard(task)
        time.sleep(0.05)
    assert not pending, f"array tasks {pending} never committed an item\n{cluster.logs()}"
    stopped = cluster.wait(job)

    assert cluster.states(job) == {0: ("CANCELLED", 143), 1: ("CANCELLED", 143)}, cluster.logs()
    first_run = journal(tmp_path)
    assert 2 <= len(first_run) < items
    for task in (0, 1):
        log = cluster.log(job, task)
        assert "interrupted by SIGTERM" in log, log
        assert record_named_in(log)["exit_code"] == 143
    # Whatever the first run committed is complete; nothing was left half-written.
    assert set(outputs(tmp_path)) == {r["name"] for r in first_run}
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.endswith(".json")]

    # The same array again: done items are skipped, the rest runs, every task exits 0.
    again = cluster.submit(stamp_job, "0-1", *args)
    cluster.wait(again)
    assert cluster.states(again) == {0: ("COMPLETED", 0), 1: ("COMPLETED", 0)}, cluster.logs()
    names = sorted(f"item-{i:03d}" for i in range(items))
    assert sorted(outputs(tmp_path)) == names
    every = journal(tmp_path)
    assert sorted(r["name"] for r in every) == names, "an item was processed twice"
    assert {r["job"] for r in every} == {job, again}
    for task in (0, 1):
        record = record_named_in(cluster.log(again, task))
        assert record["exit_code"] == 0
        done_before = sum(r["task"] == task for r in first_run)
        assert record["counts"]["skipped"] == done_before
        assert record["counts"]["ran"] == buckets[task] - done_before
    print(f"cancel -> all tasks gone: {stopped:.1f}s")


def test_example_job_script_runs_as_shipped(cluster, tmp_path):
    """tasks/slurm/job.sh from the repository root, its output redirected by arguments."""
    out = tmp_path / "counts"
    job = cluster.submit(
        REPO / "tasks" / "slurm" / "job.sh", "0-3",
        "--mixin", f"input={REPO / 'tasks' / 'data' / 'text'}", f"output={out}",
        "--log-dir", str(tmp_path / "logs"),
        chdir=REPO,
    )  # fmt: skip
    cluster.wait(job)
    assert cluster.states(job) == {t: ("COMPLETED", 0) for t in range(4)}, cluster.logs()
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert made == ["fox.txt.json", "hamlet.txt.json", "nested/shards.txt.json"]
    assert json.loads((out / "fox.txt.json").read_text())["source"] == "fox.txt"


def test_an_array_over_a_bucket_makes_every_item_once(cluster, s3_server, tmp_path):
    """Array tasks read and write a bucket as a local run does: the shards of `--shard auto`
    cover it, each object made once (the store's credentials reach them in the environment)."""
    bucket = s3_server.bucket()
    data = tmp_path / "in"
    data.mkdir()
    for i in range(10):
        (data / f"{i:02d}.dat").write_bytes(bytes([i]) * 50)
    s3_server.upload_tree(data, bucket, "in")
    argv = [sys.executable, "-m", "dispatcher", str(task_file("storage_objects")), "Files",
            "--shard", "auto", "--log-dir", str(tmp_path / "logs"), "--mixin",
            f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    script = tmp_path / "bucket.sh"
    script.write_text("#!/bin/bash\nexec " + shlex.join(argv) + "\n")
    for name in s3_server.unset_env():
        cluster.env.pop(name, None)
    cluster.env.update(s3_server.env())
    job = cluster.submit(script, "0-2")
    cluster.wait(job)
    assert cluster.states(job) == {t: ("COMPLETED", 0) for t in range(3)}, cluster.logs()
    made = {k for k in s3_server.keys(bucket, "out") if not k.startswith(".dispatch-run")}
    assert made == {f"{i:02d}.dat.bin" for i in range(10)}
    ran = sum(int(re.search(r"ran (\d+)", cluster.log(job, t))[1]) for t in range(3))
    assert ran == 10, cluster.logs()


def test_an_array_over_row_ranges_makes_each_file_once_whole(cluster, tmp_path):
    """`--rows-per-item` in array tasks: each file's ranges are in one task's shard, every
    range is made once, and each file's joined output is the file an unsplit run makes."""
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    for f in range(4):
        rows = (json.dumps({"id": f * 1000 + i, "text": f"  row {i}  "}) for i in range(600))
        (data / f"f{f}.jsonl").write_text("\n".join(rows) + "\n")
    package = REPO / "tasks" / "operators" / "text_clean"
    argv = [sys.executable, "-m", "dispatcher", str(package), "--shard", "auto",
            "--rows-per-item", "100", "--log-dir", str(tmp_path / "logs"), "--mixin",
            f"input={data}", f"output={out}"]  # fmt: skip
    script = tmp_path / "ranges.sh"
    script.write_text("#!/bin/bash\nexec " + shlex.join(argv) + "\n")
    job = cluster.submit(script, "0-2")
    cluster.wait(job)
    assert cluster.states(job) == {t: ("COMPLETED", 0) for t in range(3)}, cluster.logs()
    ran = sum(int(re.search(r"ran (\d+)", cluster.log(job, t))[1]) for t in range(3))
    whole = subprocess.run(
        [sys.executable, "-m", "dispatcher", str(package), "--log-dir", str(tmp_path / "logs"),
         "--mixin", f"input={data}", f"output={tmp_path / 'whole'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    for f in range(4):
        assert (out / f"f{f}.jsonl").read_bytes() == (
            tmp_path / "whole" / f"f{f}.jsonl"
        ).read_bytes()
    assert ran > 8 and not [p for p in out.iterdir() if "dispatch-rows" in p.name]
