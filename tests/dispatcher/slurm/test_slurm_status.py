"""`dispatch status` and `dispatch submit --resubmit`: shards planned from the outputs, last
runs from their records, the queue from squeue; resubmitting only incomplete shards."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from conftest import run_dispatch
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

from dispatcher.sharding import hash_bucket


def sizes(items: int, count: int) -> list[int]:
    return [
        sum(hash_bucket(f"item-{i:03d}", count) == s for i in range(items)) for s in range(count)
    ]


def status_json(tmp_path, *args: str) -> dict:
    done = run_dispatch("status", "--json", *args, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_after_a_partial_run(tmp_path):
    items, count = 40, 4
    command = stamp_command(tmp_path, items)
    for shard in (0, 2):
        done = run_dispatch(*command, "--shard", f"{shard}/{count}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    shown = status_json(tmp_path, "--array", str(count), "--", *command)
    expected = sizes(items, count)
    rows = shown["shards"]
    assert [r["items"] for r in rows] == expected
    assert [r["done"] for r in rows] == [expected[0], 0, expected[2], 0]
    assert [r["to_run"] for r in rows] == [0, expected[1], 0, expected[3]]
    assert [r["outcome"] for r in rows] == ["success", None, "success", None]
    assert [r["exit_code"] for r in rows] == [0, None, 0, None]
    assert shown["totals"] == {
        "items": items,
        "done": expected[0] + expected[2],
        "to_run": expected[1] + expected[3],
        "complete_shards": 2,
    }
    # The table says the same, one line per shard and the totals.
    table = run_dispatch("status", "--array", "4", *command, cwd=tmp_path, env=clean_env())
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["shard", "items", "done", "to"]
    assert lines[2].split()[:6] == ["1", str(expected[1]), "0", str(expected[1]), "-", "-"]
    assert lines[-1].split() == [
        "total",
        str(items),
        str(shown["totals"]["done"]),
        str(shown["totals"]["to_run"]),
    ]
    assert "2 of 4 shards complete" in table.stderr


def test_status_counts_from_outputs_when_records_are_gone(tmp_path):
    items, count = 30, 3
    command = stamp_command(tmp_path, items)
    assert run_dispatch(*command, "--shard", "1/3", cwd=tmp_path).returncode == 0
    shutil.rmtree(tmp_path / "logs")
    rows = status_json(tmp_path, "--array", str(count), "--", *command)["shards"]
    expected = sizes(items, count)
    assert [r["done"] for r in rows] == [0, expected[1], 0]
    assert all(r["outcome"] is None for r in rows)


def test_status_and_resubmit_need_n_without_an_earlier_submission(tmp_path):
    command = stamp_command(tmp_path)
    for verb in (["status"], ["submit", "--resubmit", "--dry-run"]):
        done = run_dispatch(*verb, "--", *command, cwd=tmp_path, env=clean_env())
        assert done.returncode == 2, done.stdout
        assert "no earlier dispatch submit of Stamp over these outputs" in done.stderr
        assert "give --array N" in done.stderr


def queue_answering(tmp_path, script: str) -> dict[str, str]:
    """An environment whose `squeue` is `script` (bash): a queue that answers as told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    squeue = bin_dir / "squeue"
    squeue.write_text(f"#!/bin/bash\n{script}\n")
    squeue.chmod(0o755)
    env = clean_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def test_resubmit_dry_run_lists_only_incomplete_shards(tmp_path):
    items, count = 40, 4
    command = stamp_command(tmp_path, items)
    for shard in (1, 3):
        assert run_dispatch(*command, "--shard", f"{shard}/{count}", cwd=tmp_path).returncode == 0
    done = run_dispatch(
        "submit", "--resubmit", "--array", "4", "--dry-run", "--", *command, cwd=tmp_path,
        env=queue_answering(tmp_path, "exit 0"),  # an empty queue
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --array=0,2\n" in done.stdout
    for shard in (0, 2):
        assert run_dispatch(*command, "--shard", f"{shard}/{count}", cwd=tmp_path).returncode == 0
    done = run_dispatch(
        "submit", "--resubmit", "--array", "4", "--", *command, cwd=tmp_path, env=clean_env()
    )
    assert done.returncode == 0, done.stderr
    assert "nothing to submit: all 4 shards are complete" in done.stdout
    assert not (tmp_path / "logs" / "slurm").exists()


@pytest.mark.parametrize("queue", ["exit 1", "sleep 0; echo 'slurm_load_jobs error' >&2; exit 1"])
def test_resubmit_refuses_when_the_queue_cannot_be_asked(tmp_path, queue):
    """Without squeue's answer a queued or running shard looks incomplete: resubmitting it
    could run it twice. Refused unless --no-queue-check says to go ahead."""
    command = stamp_command(tmp_path, 20)
    assert run_dispatch(*command, "--shard", "1/2", cwd=tmp_path).returncode == 0
    env = queue_answering(tmp_path, queue)
    done = run_dispatch("submit", "--resubmit", "--array", "2", "--dry-run", "--", *command,
                        cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dispatch: error: submit --resubmit: the queue could not be asked")
    assert "--no-queue-check" in line and done.stdout == ""
    forced = run_dispatch("submit", "--resubmit", "--no-queue-check", "--array", "2",
                          "--dry-run", "--", *command, cwd=tmp_path, env=env)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "#SBATCH --array=0\n" in forced.stdout
    assert "not checked against the queue" in forced.stderr
    alone = run_dispatch("submit", "--no-queue-check", "--array", "2", "--dry-run", "--",
                         *command, cwd=tmp_path, env=env)  # fmt: skip
    assert alone.returncode == 2 and "only applies to --resubmit" in alone.stderr
    (tmp_path / "empty").mkdir()
    no_squeue = dict(env, PATH=str(tmp_path / "empty"))  # no squeue at all
    done = run_dispatch("submit", "--resubmit", "--array", "2", "--dry-run", "--", *command,
                        cwd=tmp_path, env=no_squeue)  # fmt: skip
    assert done.returncode == 2 and "the queue could not be asked" in done.stderr


@pytest.mark.slow
@needs_cluster
def test_cancelled_shard_shows_in_status_and_resubmit_runs_only_it(tmp_path, jobs):
    items, count = 200, 4
    command = stamp_command(tmp_path, items, delay=0.05)
    ids, _ = submit(tmp_path, "--array", str(count), "--time", "5", "--", *command)
    jobs.extend(ids)
    (job,) = ids
    # While the array runs, status sees its tasks in the queue.
    queue = [r["queue"] for r in status_json(tmp_path, "--", *command)["shards"]]
    assert {"PENDING", "RUNNING"} & set(queue), queue
    # scancel (SIGTERM) the first array task that committed an item, mid-run.
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        started = {int(r["task"]) for r in journal(tmp_path)}
        victim = min(started) if started else None
        time.sleep(0.05)
    assert victim is not None, "no array task committed an item"
    subprocess.run(["scancel", f"{job}_{victim}"], check=True, timeout=30)
    wait_for(ids)
    states = task_states(job)
    assert states[victim] == ("CANCELLED", 143), states
    assert all(states[t] == ("COMPLETED", 0) for t in range(count) if t != victim), states

    shown = status_json(tmp_path, "--", *command)
    assert shown["shard_count"] == count  # remembered from the submission
    rows = shown["shards"]
    assert [r["shard"] for r in rows if r["to_run"]] == [victim]
    assert rows[victim]["outcome"] == "interrupted by SIGTERM"
    assert rows[victim]["exit_code"] == 143 and rows[victim]["job"] == f"{job}_{victim}"
    assert all(r["queue"] is None for r in rows)

    again, done = submit(tmp_path, "--resubmit", "--time", "5", "--", *command)
    jobs.extend(again)
    assert len(again) == 1 and f"shards {victim} of 4 (array {victim})" in done.stdout
    wait_for(again)
    assert task_states(again[0]) == {victim: ("COMPLETED", 0)}
    names = sorted(f"item-{i:03d}" for i in range(items))
    assert sorted(outputs(tmp_path)) == names
    assert sorted(r["name"] for r in journal(tmp_path)) == names, "an item was processed twice"
    rows = status_json(tmp_path, "--", *command)["shards"]
    assert all(not r["to_run"] for r in rows)
    assert rows[victim]["outcome"] == "success" and rows[victim]["job"] == f"{again[0]}_{victim}"
    last, done = submit(tmp_path, "--resubmit", "--", *command)
    assert last == [] and "nothing to submit" in done.stdout
