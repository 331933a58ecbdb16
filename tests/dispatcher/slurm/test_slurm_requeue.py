"""`dispatch submit --requeue`: the time-limit warning (USR1) stops the dispatcher, which
writes its record, and the array task requeues itself and resumes its shard."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_dir, run_record
from test_slurm_submit import (
    clean_env,
    journal,
    needs_cluster,
    outputs,
    stamp_command,
    submit,
    task_states,
    wait_for,
)

from dispatcher.slurm.submit import render_script, split_shards


def _script(tmp_path: Path, items: int, delay: float) -> Path:
    command = stamp_command(tmp_path, items, delay)
    text = render_script(
        split_shards([0], 1001)[0], 1, command, log_dir=str(tmp_path / "logs"),
        cwd=str(tmp_path), job_name="t", requeue_before=60,
    )  # fmt: skip
    assert "#SBATCH --requeue\n#SBATCH --signal=B:USR1@60\n" in text
    path = tmp_path / "job.sh"
    path.write_text(text)
    return path


def _start_job(path: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = clean_env()
    env.update(SLURM_ARRAY_JOB_ID="4242420", SLURM_JOB_ID="4242421", SLURM_ARRAY_TASK_ID="0")
    return subprocess.Popen(
        ["bash", str(path)], env=env, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def _wait_for_items(tmp_path: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(journal(tmp_path)) < n:
        assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)


def test_usr1_stops_the_dispatcher_with_its_record_and_asks_for_a_requeue(tmp_path):
    proc = _start_job(_script(tmp_path, 40, 0.2), tmp_path)
    _wait_for_items(tmp_path, 1, proc)
    os.kill(proc.pid, signal.SIGUSR1)  # what --signal=B:USR1 does: the batch shell only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "requeueing 4242420_0" in err
    record = run_record(run_dir(tmp_path / "logs", "Stamp"))
    assert record["exit_code"] == 143 and record["outcome"] == "interrupted by SIGTERM"
    assert 1 <= len(outputs(tmp_path)) < 40


def test_sigterm_to_the_whole_job_stops_it_once_without_requeue(tmp_path):
    """scancel: every process gets SIGTERM; the shell does not send a second one."""
    proc = _start_job(_script(tmp_path, 40, 0.5), tmp_path)
    _wait_for_items(tmp_path, 1, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "requeueing" not in err
    # One signal: the grace period let the item in flight finish (a second would abandon it).
    assert "abandon" not in err.lower(), err
    assert run_record(run_dir(tmp_path / "logs", "Stamp"))["exit_code"] == 143


@pytest.mark.slow
@needs_cluster
def test_time_limit_warning_requeues_the_task_which_resumes_its_shard(tmp_path, jobs):
    items = 60
    command = stamp_command(tmp_path, items, delay=0.1)
    ids, done = submit(tmp_path, "--array", "2", "--requeue", "--time", "5", "--", *command)
    jobs.extend(ids)
    (job,) = ids
    deadline = time.monotonic() + 60
    while not [r for r in journal(tmp_path) if r["task"] == "1"]:
        assert time.monotonic() < deadline, "array task 1 never committed an item"
        time.sleep(0.05)
    # The warning SLURM sends before the time limit, to the batch shell only.
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_1"], check=True, timeout=30)
    _wait_until_restarted(f"{job}_1", timeout=90)
    wait_for(ids)
    assert "Restarts=0" in _show(f"{job}_0")  # only the warned task was requeued
    assert task_states(job) == {0: ("COMPLETED", 0), 1: ("COMPLETED", 0)}
    names = sorted(f"item-{i:03d}" for i in range(items))
    assert sorted(outputs(tmp_path)) == names
    assert sorted(r["name"] for r in journal(tmp_path)) == names, "an item was processed twice"
    runs = sorted((tmp_path / "logs" / "Stamp").glob(f"*-segment1of2-{job}_1-*/run.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert [r["exit_code"] for r in records] == [143, 0], records
    assert records[1]["counts"]["skipped"] >= 1  # the requeued task resumed its shard
    assert re.search(r"Restarts=1\b", _show(f"{job}_1"))


def _wait_until_restarted(task: str, timeout: float) -> None:
    """Until the requeued array task `task` runs again (or has finished).

    SLURM holds a requeued job for a while (Reason=BeginTime). Released a few seconds
    after it is pending again: started within the second of its requeue, slurmd would
    refuse it (its credential revoked by the requeue), which is why SLURM holds it.
    """
    deadline = time.monotonic() + timeout
    restarted = re.compile(r"JobState=(RUNNING|COMPLETED)\b.*\bRestarts=1\b", re.S)
    pending_since = None
    while not restarted.search(shown := _show(task)):
        assert time.monotonic() < deadline, shown
        if "Restarts=1" in shown and "JobState=PENDING" in shown:
            pending_since = pending_since or time.monotonic()
            if time.monotonic() - pending_since > 3:
                subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], timeout=30)
        time.sleep(0.5)


def _show(job: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30
    ).stdout


def _urgent_partition() -> bool:
    shown = subprocess.run(
        ["scontrol", "show", "partition", "urgent"], capture_output=True, text=True, timeout=30
    )
    return shown.returncode == 0 and "PriorityTier=10" in shown.stdout


@pytest.mark.slow
@needs_cluster
def test_a_preempted_task_is_requeued_and_resumes_its_shard(tmp_path, jobs):
    """A job in the local cluster's `urgent` partition preempts ours (PreemptMode=REQUEUE):
    SIGTERM, the record written, SLURM requeues the task, which resumes its shard."""
    if not _urgent_partition():
        pytest.skip("the cluster has no preempting `urgent` partition (scripts/local-slurm.sh)")
    items = 40
    command = stamp_command(tmp_path, items, delay=0.2)
    ids, _ = submit(tmp_path, "--array", "1", "--requeue", "--time", "5", "--", *command)
    jobs.extend(ids)
    (job,) = ids
    deadline = time.monotonic() + 60
    while not journal(tmp_path):
        assert time.monotonic() < deadline, "the array task never committed an item"
        time.sleep(0.05)
    cpus = os.cpu_count() or 1
    urgent = subprocess.run(
        ["sbatch", "--parsable", "--partition=urgent", f"--cpus-per-task={cpus}",
         f"--output={tmp_path / 'urgent.out'}", "--wrap=sleep 2"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    jobs.append(urgent)
    wait_for([urgent], timeout=120)
    _wait_until_restarted(f"{job}_0", timeout=120)
    wait_for(ids)
    assert task_states(job) == {0: ("COMPLETED", 0)}
    names = sorted(f"item-{i:03d}" for i in range(items))
    assert sorted(outputs(tmp_path)) == names
    assert sorted(r["name"] for r in journal(tmp_path)) == names, "an item was processed twice"
    runs = sorted((tmp_path / "logs" / "Stamp").glob(f"*-{job}_0-*/run.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert [r["exit_code"] for r in records] == [143, 0], records
    assert records[1]["counts"]["skipped"] >= 1
