"""Records tell the truth after the fact: a heartbeat while the run goes; a run killed by
SIGKILL (or lost with its node) shows as killed in `dispatch status`, never running."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import time

from conftest import run_dispatch, start_dispatch, task_file

from dispatcher.execution.steps import Outcome
from dispatcher.report import run_record
from dispatcher.report.counts import Counts
from dispatcher.report.liveness import STALE_AFTER, shown_outcome
from dispatcher.report.reporter import Reporter


def test_a_running_record_whose_heartbeat_is_stale_was_killed():
    now = dt.datetime.now().astimezone()
    beat = (now - dt.timedelta(seconds=STALE_AFTER + 5)).isoformat(timespec="seconds")
    fresh = now.isoformat(timespec="seconds")
    elsewhere = {"outcome": "running", "host": "another-node", "pid": 1}
    assert shown_outcome({**elsewhere, "heartbeat": fresh}, now) == "running"
    assert (
        shown_outcome({**elsewhere, "heartbeat": beat}, now)
        == f"killed (no heartbeat since {beat})"
    )
    gone = {"outcome": "running", "host": os.uname().nodename, "pid": 2**22 + 7, "heartbeat": fresh}
    assert shown_outcome(gone, now).startswith("killed (last heartbeat")
    assert shown_outcome({"outcome": "success", "heartbeat": beat}, now) == "success"


def test_a_running_reporter_beats_with_progress_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(run_record, "HEARTBEAT_SECONDS", 0.05)
    reporter = Reporter(
        str(tmp_path / "run"), Counts(to_run=3), {}, stream=io.StringIO(), interval=3600
    )
    first = json.loads((tmp_path / "run" / "run.json").read_text())
    assert first["outcome"] == "running" and first["heartbeat"] == first["start"]
    time.sleep(0.1)
    reporter.record_outcome(Outcome("a", True))
    time.sleep(0.1)
    reporter.tick()
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s[1:] for s in record["samples"]] == [[1, 0], [1, 0]]  # (settled, failed)
    assert record["heartbeat"] >= first["heartbeat"]
    assert reporter.finish(None) == 0
    final = json.loads((tmp_path / "run" / "run.json").read_text())
    assert final["outcome"] == "success"
    # The end is a sample too: a run shorter than a heartbeat has its throughput.
    assert len(final["samples"]) == 3
    assert final["samples"][-1] == [round(final["wall_seconds"], 1), 1, 0]


def test_status_shows_a_killed_shard_as_killed(tmp_path):
    task = task_file("signals_slow")
    command = [str(task), "Slow", "--backbone", "serial", "--log-dir", str(tmp_path / "logs"),
               "--mixin", f"out={tmp_path / 'out'}", "n=6", "sleep=0", "hang_on=2"]  # fmt: skip
    job = start_dispatch(*command, "--shard", "0/1", start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 30
    while not list((tmp_path / "logs").rglob("run.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    record = json.loads(next((tmp_path / "logs").rglob("run.json")).read_text())
    assert record["outcome"] == "running"  # what it said when it was killed
    shown = run_dispatch("status", "--json", "--array", "1", "--", *command, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)["shards"][0]
    assert row["outcome"].startswith("killed (last heartbeat "), row
