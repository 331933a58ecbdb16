"""A log directory that cannot be written: refused before work, or survived mid-run.

Real faults only: a small tmpfs that fills up while the run goes, a read-only mount.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_dir, run_dispatch, run_record, task_file

pytestmark = pytest.mark.slow


# Item 3 fills the log directory (a filler file up to the last byte); failing items then
# have long errors that cannot be recorded. With `free=K`, item K removes the filler.
def _dispatch(tmp_path: Path, logs: Path, backbone: str, *mixin: str):
    task = task_file("report_filler")
    out = tmp_path / "out"
    return out, run_dispatch(
        str(task),
        "Filler",
        "--backbone",
        backbone,
        "--log-dir",
        str(logs),
        "--mixin",
        f"out={out}",
        f"logs={logs}",
        *mixin,
        timeout=300,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Traceback" in line or "Error" in line]


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_a_log_directory_that_fills_up_mid_run_still_ends_with_a_summary(tmpfs, tmp_path, backbone):
    logs = tmpfs("logs", "size=64k")
    out, done = _dispatch(tmp_path, logs, backbone)
    assert done.returncode == 1, done.stderr  # odd items failed: the exit code says so
    assert "Traceback" not in done.stderr
    # every item committed its output: a log fault never touches outputs
    assert sorted(p.name for p in out.iterdir()) == [f"{i:03d}.txt" for i in range(10)]
    assert "ran 10 (5 ok, 5 failed)" in done.stderr
    fault = [line for line in done.stderr.splitlines() if "cannot write" in line]
    assert len(fault) == 1 and "No space left on device" in fault[0], done.stderr
    # the record was written with room reserved: its outcome is written in place, full disk
    # or not, so a full log directory cannot leave it saying "running"
    assert "the run record could not be written" not in done.stderr
    made_in = run_dir(logs, "Filler")
    rows = [json.loads(line) for line in (made_in / "failures.jsonl").read_text().splitlines()]
    # (mp workers finish in any order: the rows are some of the failed items, each once)
    keys = [r["key"] for r in rows]
    assert len(set(keys)) == len(keys) and set(keys) <= {"001", "003", "005", "007", "009"}
    record = json.loads((made_in / "run.json").read_text())
    assert record["outcome"] == "some items failed" and record["exit_code"] == 1
    assert record["counts"]["failed"] == 5 and record["log_faults"]["failures_not_written"] >= 1


def test_a_record_gets_its_outcome_when_space_comes_back(tmpfs, tmp_path):
    logs = tmpfs("logs", "size=64k")
    out, done = _dispatch(tmp_path, logs, "serial", "free=6")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert len(list(out.iterdir())) == 10
    record = run_record(logs, "Filler")
    assert record["outcome"] == "some items failed" and record["exit_code"] == 1
    assert record["counts"]["failed"] == 5
    lost = record["log_faults"]
    assert lost["failures_not_written"] >= 1 and "No space left" in lost["error"]
    assert "the run record could not be written" not in done.stderr
    rows = [
        json.loads(line)
        for line in (run_dir(logs, "Filler") / "failures.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 5 - lost["failures_not_written"]


def test_a_full_log_directory_with_only_successes_exits_0(tmpfs, tmp_path):
    logs = tmpfs("logs", "size=64k")
    out, done = _dispatch(tmp_path, logs, "serial", "fail=false")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "ran 10 (10 ok, 0 failed)" in done.stderr and "success" in done.stderr
    assert "the run record could not be written" not in done.stderr  # in its reserved room
    assert run_record(logs, "Filler")["outcome"] == "success"


def test_a_read_only_log_directory_is_a_configuration_error(tmpfs, tmp_path):
    logs = tmpfs("ro-logs", "ro,size=64k")
    out, done = _dispatch(tmp_path, logs, "serial")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatch: error: "), done.stderr
    assert str(logs) in lines[0] and "Read-only file system" in lines[0]
    assert not out.exists()  # no item ran


def test_a_log_directory_below_a_file_is_a_configuration_error(tmp_path):
    (tmp_path / "afile").write_text("")
    out, done = _dispatch(tmp_path, tmp_path / "afile" / "logs", "serial")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("dispatch: error: ") and len(done.stderr.splitlines()) == 1
    assert not out.exists()
    assert os.path.isfile(tmp_path / "afile")
