"""SIGINT / SIGTERM: stop new work, a grace period for the item in flight, 130 / 143, resume.

The `mp` backbone's signal handling is tested with its worker processes in
test_backbone_mp.py; here: the stop signal itself and the in-process `serial` backbone.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import committed, run_dispatch, start_dispatch, task_file

from backbones.serial import SerialBackbone
from dispatcher.engines import RunContext
from dispatcher.execution.signals import StopSignal
from dispatcher.items import ItemSource
from dispatcher.report.counts import Counts
from dispatcher.report.reporter import Reporter
from dispatcher.runner.options import build_options
from dispatcher.stage import Stage


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in committed(out, "*.txt")}


def _staging(out: Path) -> list[Path]:
    return list(out.glob(".*dispatch-part*")) if out.exists() else []


def _start_slow(task: Path, out: Path, *extra: str, **mixin: object) -> subprocess.Popen[str]:
    """The Slow task started on `serial`, its logs beside `out`."""
    fills = [f"out={out}", *(f"{k}={v}" for k, v in mixin.items())]
    return start_dispatch(task, "Slow", "--backbone", "serial", "--log-dir", out.parent / "logs",
                          *extra, "--mixin", *fills, start_new_session=True)  # fmt: skip


def _wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def slow_task() -> Path:
    return task_file("signals_slow")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serial_stops_after_the_item_in_flight_and_a_rerun_completes(slow_task, tmp_path, sig):
    out = tmp_path / "out"
    proc = _start_slow(slow_task, out, n=30)
    _wait_for(lambda: len(_outputs(out)) >= 3)
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    got = _outputs(out)
    assert 3 <= len(got) < 30
    assert set(got.values()) == {"partial done"}
    assert not _staging(out)
    assert f"interrupted by {signal.Signals(sig).name}" in stderr
    assert "run the same command again" in stderr
    done = run_dispatch(
        str(slow_task),
        "Slow",
        "--backbone",
        "serial",
        "--log-dir",
        str(tmp_path / "logs"),
        "--mixin",
        f"out={out}",
        "n=30",
        "sleep=0",
    )
    assert done.returncode == 0, done.stderr
    assert len(_outputs(out)) == 30 and set(_outputs(out).values()) == {"partial done"}
    assert f"skipped {len(got)}," in done.stderr


def test_serial_abandons_an_item_that_outlives_the_grace_period(slow_task, tmp_path):
    out = tmp_path / "out"
    proc = _start_slow(slow_task, out, "--grace", "0.5", n=5, sleep=0, hang_on=2)
    _wait_for(lambda: len(_outputs(out)) >= 2 and bool(_staging(out)))
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert time.monotonic() - began < 5
    assert sorted(_outputs(out)) == ["0000.txt", "0001.txt"]
    assert not _staging(out)  # the abandoned item's staging file was removed
    assert "ran 2 (2 ok, 0 failed), not run 3" in stderr
    assert "Traceback" not in stderr


def test_a_second_signal_ends_the_serial_grace_period_at_once(slow_task, tmp_path):
    out = tmp_path / "out"
    proc = _start_slow(slow_task, out, "--grace", "60", n=3, sleep=0, hang_on=1)
    _wait_for(lambda: bool(_staging(out)))
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 5
    assert proc.returncode == 130, stderr  # named by the first signal
    assert not _staging(out)


def test_stop_signal_deadline_and_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal(grace=5.0) as stop:
        assert not stop.is_set() and stop.deadline() is None and stop.exit_code is None
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(stop.is_set, timeout=5)
        assert stop.signum == signal.SIGTERM and stop.exit_code == 143
        assert stop.deadline() == pytest.approx(stop.received_at + 5.0)
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for(lambda: stop.count == 2, timeout=5)
        assert stop.signum == signal.SIGTERM  # the first one decides the exit code
        assert stop.deadline() == stop.received_at  # a second signal: no more grace
    assert signal.getsignal(signal.SIGTERM) is before


class _Task(Stage):
    """Minimal in-process stage: each item sends SIGTERM to this process at item 1."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.torn_down = False
        self.force = False
        self.source = ItemSource()  # no declared outputs: each item stages an empty dict

    def setup(self, device: object = None) -> None:
        pass

    def teardown(self) -> None:
        self.torn_down = True

    def load(self, key: str, payload: object) -> str:
        return key

    def write_row(self, i: int, size: int, key: str, result: object, outputs: object) -> None:
        self.ran.append(key)
        if key == "b":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)


def test_serial_disarms_the_grace_timer_when_it_returns_in_time(tmp_path):
    task = _Task()
    reporter = Reporter(str(tmp_path / "run"), Counts(to_run=4), {}, stream=io.StringIO())
    with StopSignal(grace=0.3) as stop:
        options = build_options(SerialBackbone, None).parser.parse_args([])
        items = [("a", None), ("b", None), ("c", None), ("d", None)]
        SerialBackbone(options).run(RunContext(task, items, reporter, stop))  # type: ignore[arg-type]
        time.sleep(0.6)  # a timer left armed would raise GraceExpired here
    assert task.ran == ["a", "b"] and task.torn_down
    assert reporter.finish(stop.signum) == 143


def _lines(stream) -> list[str]:
    """Lines of a running process's stream, as they come (read on a thread)."""
    import threading

    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_the_first_signal_says_at_once_what_happens_and_the_second_too(slow_task, tmp_path):
    out = tmp_path / "out"
    proc = _start_slow(slow_task, out, "--grace", "60", n=3, sleep=0, hang_on=1)
    lines = _lines(proc.stderr)
    _wait_for(lambda: bool(_staging(out)))  # item 1 hangs in flight
    os.kill(proc.pid, signal.SIGINT)
    _wait_for(lambda: any("stopping" in line for line in lines), timeout=5)
    assert proc.poll() is None  # said while the item is still in flight
    first = next(line for line in lines if "stopping" in line)
    assert first.strip() == (
        "dispatch: stopping (SIGINT): no new item starts; the items in flight get up to "
        "60 s to finish (Ctrl-C again to stop at once)"
    )
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    assert any(line.startswith("dispatch: stopping now (SIGINT): the items in flight are abandoned")
               for line in lines)  # fmt: skip
