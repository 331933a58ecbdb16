"""Progress, summary, failures.jsonl and run.json, the same for every backbone."""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import socket
import sys
from pathlib import Path

import pytest
from conftest import dispatch_here, run_dir, run_dispatch, run_in_terminal, run_record, task_file

from dispatcher.execution.steps import Outcome
from dispatcher.report.counts import Counts
from dispatcher.report.reporter import Reporter


@pytest.fixture
def task() -> Path:
    return task_file("report_squares")


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_summary_failures_and_run_record_for_every_backbone(task, tmp_path, backbone):
    out, logs = tmp_path / "data" / "out", tmp_path / "logs"
    # two items done already: skipped by the plan
    out.mkdir(parents=True)
    for i in (0, 1):
        (out / f"{i:03d}.txt").write_text(str(i * i))
    argv = [
        str(task),
        "Squares",
        "--backbone",
        backbone,
        "--log-dir",
        str(logs),
        "--mixin",
        f"out={out}",
        "bad=5",
    ]
    done = run_dispatch(*argv)
    assert done.returncode == 1, done.stderr
    summary = re.search(
        r"found 12, in shard 12, skipped 2, ran 10 \(9 ok, 1 failed\), ([0-9.]+)s, ([0-9.]+) items/s",
        done.stderr,
    )
    assert summary, done.stderr
    made_in = run_dir(logs, "Squares")
    assert f"failures listed in {made_in / 'failures.jsonl'}" in done.stderr
    # nothing but outputs in the output root
    assert sorted(p.name for p in out.iterdir()) == [f"{i:03d}.txt" for i in range(12) if i != 5]

    rows = [json.loads(line) for line in (made_in / "failures.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["key"] == "005" and rows[0]["item"] == {"i": 5}
    assert rows[0]["error"] == "ZeroDivisionError: cannot square 5"
    assert "Traceback" in rows[0]["traceback"] and "raise ZeroDivisionError" in rows[0]["traceback"]

    record = run_record(logs, "Squares")
    assert record["argv"] == argv
    assert record["config"]["backbone"]["name"] == backbone
    assert record["config"]["mixin"] == {"out": str(out), "n": 12, "bad": 5}
    assert record["config"]["shard"] == "all"
    assert record["counts"] == {
        "found": 12,
        "in_shard": 12,
        "skipped": 2,
        "to_run": 10,
        "ran": 10,
        "succeeded": 9,
        "failed": 1,
        "not_run": 0,
    }
    assert record["outcome"] == "some items failed" and record["exit_code"] == 1
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    # The package's own version is the installed distribution's (one version, two places).
    assert record["versions"]["shard-dispatch"] == importlib.metadata.version("shard-dispatch")
    assert record["host"] == socket.gethostname()
    assert record["start"] <= record["end"]
    assert record["wall_seconds"] >= 0 and record["items_per_second"] > 0
    assert record["pid"] > 0 and record["host"]


def test_run_record_names_the_shard(task, tmp_path):
    out, logs = tmp_path / "out", tmp_path / "logs"
    done = dispatch_here(
        str(task),
        "Squares",
        "--backbone",
        "serial",
        "--shard",
        "1/3",
        "--log-dir",
        str(logs),
        "--mixin",
        f"out={out}",
        "n=30",
    )
    assert done.returncode == 0, done.stderr
    record = run_record(logs, "Squares")
    assert record["config"]["shard"] == "hash 1/3"
    assert record["counts"]["found"] == 30
    assert 0 < record["counts"]["in_shard"] < 30
    assert record["counts"]["succeeded"] == record["counts"]["in_shard"] == len(list(out.iterdir()))
    assert record["outcome"] == "success" and record["exit_code"] == 0
    assert not (run_dir(logs, "Squares") / "failures.jsonl").exists()


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    reporter = Reporter(
        str(tmp_path / "run"), Counts(found=4, to_run=4), {}, stream=stream, interval=0
    )
    reporter.record_outcome(Outcome("a", True))
    reporter.record_outcome(Outcome("b", False, "ValueError: no", "Traceback ..."))
    reporter.tick()
    lines = [line for line in stream.getvalue().splitlines() if "items (" in line]
    stamp = r"dispatch: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "  # a log file is read long after
    assert re.match(stamp + r"1/4 items \(25\.0%\), 0 failed, ", lines[0]), lines[0]
    assert re.match(stamp + r"2/4 items \(50\.0%\), 1 failed, ", lines[1]), lines[1]
    assert re.search(r"[0-9.]+ items/s, eta \S+$", lines[1])
    assert len(lines) == 3  # tick() keeps lines coming while a backbone waits
    assert "\r" not in stream.getvalue()  # no bar in a log file
    assert reporter.finish(None) == 1
    assert "ran 2 (1 ok, 1 failed), not run 2" in stream.getvalue()


def test_no_progress_line_before_the_interval(tmp_path):
    stream = io.StringIO()
    reporter = Reporter(str(tmp_path / "run"), Counts(to_run=3), {}, stream=stream, interval=3600)
    for key in "abc":
        reporter.record_outcome(Outcome(key, True))
    reporter.tick()
    assert "items (" not in stream.getvalue()
    assert reporter.finish(None) == 0


def test_a_progress_bar_on_a_terminal(task, tmp_path):
    out = tmp_path / "out"
    code, text = run_in_terminal(task, "Squares", "--backbone", "mp", "--log-dir",
                                 tmp_path / "logs", "--mixin", f"out={out}", "n=40", "bad=3")  # fmt: skip
    assert code == 1, text
    assert "\r" in text  # a bar redraws in place
    assert re.search(r"dispatch: 100%.*40/40", text), text
    assert "failed=1" in text
    assert "item/s" in text
    assert "found 40, in shard 40, skipped 0, ran 40 (39 ok, 1 failed)" in text


def test_abort_and_crash_are_recorded_as_the_outcome(tmp_path):
    stream = io.StringIO()
    reporter = Reporter(str(tmp_path / "a"), Counts(to_run=5), {}, stream=stream)
    reporter.abort("task setup failed in a worker: OSError: no GPU", "Traceback (most recent...)")
    reporter.record_outcome(Outcome("x", True))
    assert reporter.finish(None) == 1
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["outcome"] == "aborted: task setup failed in a worker: OSError: no GPU"
    assert record["counts"]["not_run"] == 4
    rows = [
        json.loads(line) for line in (tmp_path / "a" / "failures.jsonl").read_text().splitlines()
    ]
    assert rows[0]["key"] is None and rows[0]["traceback"].startswith("Traceback")

    reporter = Reporter(str(tmp_path / "b"), Counts(to_run=2), {}, stream=io.StringIO())
    with pytest.raises(KeyError):
        try:
            raise KeyError("oops")
        finally:
            reporter.finish(None)
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    assert record["outcome"] == "aborted: the backbone crashed: KeyError: 'oops'"
    assert record["exit_code"] == 1


def test_counts_are_their_record_and_back():
    counts = Counts(found=5, in_shard=4, skipped=1, to_run=3, duplicates=1)
    assert counts.to_record(finished=False) == {
        "found": 5,
        "in_shard": 4,
        "skipped": 1,
        "to_run": 3,
        "duplicates": 1,
    }
    counts.add_succeeded(2)
    counts.add_failed(malformed=True)
    counts.settle()
    record = counts.to_record()
    assert record == {
        "found": 5,
        "in_shard": 4,
        "skipped": 1,
        "to_run": 3,
        "duplicates": 1,
        "ran": 3,
        "succeeded": 2,
        "failed": 1,
        "not_run": 0,
        "malformed_inputs": 1,
    }
    assert Counts.from_record(json.loads(json.dumps(record))) == counts
