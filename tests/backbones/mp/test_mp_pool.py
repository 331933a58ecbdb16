"""The `mp` backbone with real worker processes: crashes, timeouts, retries, signals.

A probe task writes one small file per item through `atomic_write`; what an item does
(raise, segfault, hang, sleep) is chosen per run with --mixin. setup() and teardown()
append "s" and "t" to a file named after the worker's pid, so a test can count workers
and see that each one set up and tore down once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import failures, run_dispatch, run_record, start_dispatch, task_file
from helpers_engines import probe_leftovers as leftovers
from helpers_engines import probe_outputs as outputs
from helpers_engines import probe_workers as workers
from helpers_engines import start_dispatch_in_own_group, wait_for


@pytest.fixture
def probe() -> Path:
    return task_file("mp_probe")


def args(probe: Path, out: Path, *extra: str, n: int = 20, **mixin: object) -> list[str]:
    fills = [f"out={out}", f"n={n}", *(f"{k}={v}" for k, v in mixin.items())]
    return [
        str(probe),
        "Probe",
        "--backbone",
        "mp",
        "--log-dir",
        str(out.parent / "logs"),
        *extra,
        "--mixin",
        *fills,
    ]


def last_run(out: Path) -> tuple[dict, list[dict]]:
    """The newest run's record and failures (`args` logs beside `out`)."""
    logs = out.parent / "logs"
    return run_record(logs, "Probe"), failures(logs, "Probe")


def complete(out: Path, n: int) -> bool:
    got = outputs(out)
    return len(got) == n and all(got[f"{i:04d}.txt"] == f"partial done {i * i}" for i in range(n))


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_runs_all_items_with_setup_and_teardown_once_per_worker(
    probe, tmp_path, method
):
    out = tmp_path / "out"
    done = run_dispatch(*args(probe, out, "--start-method", method, "--num-process", "2", n=24))
    assert done.returncode == 0, done.stderr
    assert complete(out, 24)
    assert 1 <= len(workers(out)) <= 2
    assert set(workers(out).values()) == {"st"}
    record, failures = last_run(out)
    assert record["config"]["backbone"]["options"]["start_method"] == method
    assert record["counts"]["succeeded"] == 24 and not failures
    again = run_dispatch(*args(probe, out, "--start-method", method, n=24))
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_raising_segfaulting_and_unsendable_items_are_recorded_and_the_run_finishes(
    probe, tmp_path
):
    out = tmp_path / "out"
    done = run_dispatch(
        *args(
            probe,
            out,
            "--num-process",
            "2",
            "--start-method",
            "fork",
            n=30,
            raise_on=4,
            crash_on="9,17",
            unsendable=21,
        )
    )
    assert done.returncode == 1, done.stderr
    got = outputs(out)
    assert sorted(got) == [f"{i:04d}.txt" for i in range(30) if i not in (4, 9, 17, 21)]
    assert not leftovers(out)
    record, failures = last_run(out)
    by_key = {f["key"]: f for f in failures}
    assert sorted(by_key) == ["0004", "0009", "0017", "0021"]
    assert by_key["0021"]["error"].startswith("item cannot be sent to a worker")
    assert by_key["0004"]["error"] == "ValueError: item 4 is bad"
    assert by_key["0004"]["item"] == {"i": 4}
    assert "raise ValueError" in by_key["0004"]["traceback"]
    for key in ("0009", "0017"):
        assert "SIGSEGV" in by_key[key]["error"]
        # faulthandler's dump from the dead worker shows where it crashed
        assert "in process" in by_key[key]["traceback"]
    assert record["counts"] == {**record["counts"], "ran": 30, "succeeded": 26, "failed": 4}
    # two segfaults: the two first workers (or their replacements) died, replacements finished
    assert sum(1 for v in workers(out).values() if v == "s") == 2
    assert "SIGSEGV" in done.stderr


def test_a_worker_killed_with_sigkill_costs_only_its_item(probe, tmp_path):
    out = tmp_path / "out"
    # one worker: the rest of the items can only run if a replacement starts
    proc = start_dispatch(*args(probe, out, "--num-process", "1", n=16, hang_on=5))
    pid_file = out / "_pids" / "0005"
    wait_for(pid_file.exists)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(16) if i != 5]
    _, failures = last_run(out)
    assert [f["key"] for f in failures] == ["0005"]
    assert "SIGKILL" in failures[0]["error"] and "out of memory" in failures[0]["error"]
    assert sorted(workers(out).values()) == ["s", "st"]  # the killed one, its replacement
    # the killed worker left its staging and lock; the next attempt at the item removes them
    done = run_dispatch(*args(probe, out, n=16))
    assert done.returncode == 0 and complete(out, 16) and not leftovers(out)


def test_an_item_over_the_timeout_fails_and_its_worker_is_replaced(probe, tmp_path):
    out = tmp_path / "out"
    began = time.monotonic()
    done = run_dispatch(*args(probe, out, "--num-process", "1", "--timeout", "1", n=10, hang_on=3))
    assert time.monotonic() - began < 30
    assert done.returncode == 1, done.stderr
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(10) if i != 3]
    assert not leftovers(out)  # the stopped worker unwound atomic_write's staging
    _, failures = last_run(out)
    assert [f["key"] for f in failures] == ["0003"]
    assert "--timeout 1s" in failures[0]["error"]
    assert "in process" in failures[0]["traceback"]  # where it was stuck
    assert sorted(workers(out).values()) == ["s", "st"]  # the stopped one, its replacement


def test_retries_rerun_items_that_raised_or_killed_their_worker(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(
        *args(probe, out, "--num-process", "2", "--retries", "1", n=12, flaky=2, crash_once=7)
    )
    assert done.returncode == 0, done.stderr
    assert complete(out, 12)
    attempts = {p.name: len(p.read_text()) for p in (out / "_attempts").glob("????")}
    assert attempts["0002"] == 2 and attempts["0007"] == 2
    assert all(count == 1 for key, count in attempts.items() if key not in ("0002", "0007"))
    assert "retrying 0002" in done.stderr and "retrying 0007" in done.stderr
    # without retries, the same items fail once and are recorded
    out2 = tmp_path / "out2"
    done = run_dispatch(*args(probe, out2, "--num-process", "2", n=12, flaky=2, crash_once=7))
    assert done.returncode == 1
    _, failures = last_run(out2)
    assert sorted(f["key"] for f in failures) == ["0002", "0007"]


def test_retries_run_out_and_say_how_often_the_item_was_tried(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(*args(probe, out, "--num-process", "1", "--retries", "2", n=3, raise_on=1))
    assert done.returncode == 1
    _, failures = last_run(out)
    assert [f["key"] for f in failures] == ["0001"]
    assert "failed 3 attempts" in failures[0]["error"]
    assert (out / "_attempts" / "0001").read_text() == "aaa"


def test_max_tasks_per_child_replaces_workers(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(
        *args(
            probe, out, "--num-process", "1", "--max-tasks-per-child", "3", "--chunksize", "2", n=7
        )
    )
    assert done.returncode == 0, done.stderr
    assert complete(out, 7)
    assert list(workers(out).values()) == ["st"] * 3  # 3 + 3 + 1 items


def test_setup_failure_aborts_the_run_with_one_clear_record(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(*args(probe, out, "--num-process", "2", n=6, setup_fails="true"))
    assert done.returncode == 1
    assert "task setup failed in a worker: RuntimeError: no model here" in done.stderr
    assert not outputs(out)
    record, failures = last_run(out)
    assert record["outcome"].startswith("aborted: task setup failed")
    assert record["counts"]["not_run"] == 6
    assert len(failures) == 1 and "raise RuntimeError" in failures[0]["traceback"]


def test_an_item_that_kills_workers_while_being_unpacked_fails_alone(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(
        *args(probe, out, "--num-process", "2", "--chunksize", "6", n=24, poison_on=15)
    )
    assert done.returncode == 1, done.stderr
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(24) if i != 15]
    _, failures = last_run(out)
    assert [f["key"] for f in failures] == ["0015"]
    assert "SIGSEGV" in failures[0]["error"] and "while receiving this item" in failures[0]["error"]


def test_an_item_that_cannot_be_unpickled_in_a_worker_fails_alone(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(
        *args(probe, out, "--num-process", "2", "--chunksize", "4", n=8, garbled_on=2)
    )
    assert done.returncode == 1, done.stderr
    # the other items of its chunk did nothing wrong: they run
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(8) if i != 2]
    record, failures = last_run(out)
    assert [f["key"] for f in failures] == ["0002"]
    assert "could not be unpickled in the worker" in failures[0]["error"]
    assert record["counts"] == {**record["counts"], "ran": 8, "succeeded": 7, "failed": 1}


@pytest.mark.slow
def test_workers_replaced_after_every_item_never_run_out_of_file_handles(probe, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dispatcher"]
    argv += args(probe, out, "--num-process", "2", "--max-tasks-per-child", "1", n=600)
    # 600 workers come and go; each one's pipe and process handle must be released
    done = subprocess.run(
        ["bash", "-c", 'ulimit -n 256 && exec "$@"', "bash", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert complete(out, 600)
    record, failures = last_run(out)
    assert record["counts"]["succeeded"] == 600 and not failures
    assert len(workers(out)) == 600 and set(workers(out).values()) == {"st"}


def test_a_signal_after_an_abort_still_ends_in_flight_items_within_the_grace_period(
    probe, tmp_path
):
    out = tmp_path / "out"
    proc = start_dispatch(
        *args(
            probe,
            out,
            "--num-process",
            "2",
            "--grace",
            "1",
            n=4,
            hang_on=0,
            second_setup_fails="true",
        )
    )
    try:
        # one worker hangs in item 0, then the other one's setup fails: the run aborts
        wait_for(lambda: any((tmp_path / "logs").glob("Probe/*/failures.jsonl")))
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - began < 8
    assert proc.returncode == 143, stderr
    assert "no model for the second worker" in stderr
    assert not leftovers(out)  # the hanging item was abandoned and its staging removed
    record, failures = last_run(out)
    assert record["counts"]["not_run"] == 4
    assert len(failures) == 1 and failures[0]["key"] is None


def test_workers_that_keep_dying_in_setup_end_the_run_instead_of_looping(probe, tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(*args(probe, out, "--num-process", "1", n=4, setup_crashes="true"))
    assert done.returncode == 1
    assert "died before finishing setup()" in done.stderr
    assert len(workers(out)) == 3


def _stop_mid_run(
    probe: Path, out: Path, how: str, sig: int, n: int, extra: tuple[str, ...] = (), **mixin: object
) -> subprocess.Popen[str]:
    proc = start_dispatch_in_own_group(
        *args(probe, out, "--num-process", "2", *extra, n=n, **mixin)
    )
    wait_for(lambda: len(outputs(out)) >= 4)
    if how == "group":
        os.killpg(proc.pid, sig)  # what SLURM and a terminal's Ctrl-C do
    else:
        os.kill(proc.pid, sig)
    return proc


@pytest.mark.parametrize(
    ("how", "sig", "method"),
    [
        ("parent", signal.SIGTERM, "fork"),
        ("group", signal.SIGTERM, "fork"),
        ("group", signal.SIGINT, "fork"),
        # the forkserver and spawn helpers get the group's SIGTERM too
        ("group", signal.SIGTERM, "forkserver"),
        ("group", signal.SIGTERM, "spawn"),
    ],
)
def test_a_signal_stops_new_work_lets_items_finish_and_a_rerun_completes_the_set(
    probe, tmp_path, how, sig, method
):
    out = tmp_path / "out"
    proc = _stop_mid_run(probe, out, how, sig, n=40, extra=("--start-method", method), sleep=0.15)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    got = outputs(out)
    assert 4 <= len(got) < 40
    assert all(text.startswith("partial done") for text in got.values())  # in-flight ones finished
    assert not leftovers(out)
    record, failures = last_run(out)
    assert record["outcome"] == f"interrupted by {signal.Signals(sig).name}"
    assert record["counts"]["succeeded"] == len(got) and not failures
    assert record["counts"]["not_run"] == 40 - len(got)
    assert set(workers(out).values()) == {"st"}  # workers tore down cleanly
    done = run_dispatch(*args(probe, out, n=40))
    assert done.returncode == 0, done.stderr
    assert complete(out, 40)
    record, _ = last_run(out)
    assert record["counts"]["skipped"] == len(got)


def test_in_flight_items_past_the_grace_period_are_abandoned_cleanly(probe, tmp_path):
    out = tmp_path / "out"
    proc = _stop_mid_run(
        probe, out, "group", signal.SIGTERM, n=12, extra=("--grace", "1"), hang_on="8,9,10,11"
    )
    began = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert time.monotonic() - began < 10
    got = outputs(out)
    assert all(f"{i:04d}.txt" not in got for i in (8, 9, 10, 11))
    assert not leftovers(out)  # SIGTERM unwound atomic_write in the abandoned items
    record, failures = last_run(out)
    assert not failures  # abandoned is not failed: they are simply still to do
    assert record["counts"]["succeeded"] == len(got)
    done = run_dispatch(*args(probe, out, n=12))
    assert done.returncode == 0 and complete(out, 12)


def test_a_second_signal_ends_the_grace_period_at_once(probe, tmp_path):
    out = tmp_path / "out"
    proc = _stop_mid_run(
        probe, out, "parent", signal.SIGTERM, n=8, extra=("--grace", "60"), hang_on="6,7"
    )
    time.sleep(0.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 8
    assert proc.returncode == 143, stderr  # the first signal names the exit
    assert not leftovers(out)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_do_not_outlive_a_parent_killed_with_sigkill(probe, tmp_path, method):
    out = tmp_path / "out"
    proc = start_dispatch(
        *args(probe, out, "--start-method", method, "--num-process", "2", n=6, hang_on="all")
    )
    pids_dir = out / "_pids"
    # every item hangs: each worker is inside its first item
    wait_for(lambda: pids_dir.exists() and sum(1 for p in pids_dir.iterdir() if p.read_text()) == 2)
    proc.kill()
    proc.communicate(timeout=30)
    pids = [int(p.read_text()) for p in pids_dir.iterdir()]
    wait_for(lambda: all(_gone(pid) for pid in pids), timeout=15)
    assert not leftovers(out)  # each worker abandoned its item and removed its staging


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_sigterm_while_spawn_workers_start_never_hangs(probe, tmp_path, delay):
    out = tmp_path / "out"
    proc = start_dispatch_in_own_group(
        *args(probe, out, "--start-method", "spawn", "--num-process", "2", n=20, sleep=0.2)
    )
    # the run record appears just before the backbone starts its workers
    wait_for(lambda: any((tmp_path / "logs").glob("Probe/*/run.json")))
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert not leftovers(out)
    assert all(text.startswith("partial done") for text in outputs(out).values())
    assert len(outputs(out)) < 20


def test_bad_options_are_usage_errors(probe, tmp_path):
    out = tmp_path / "out"
    for extra, message in [
        (("--num-process", "0"), "--num-process"),
        (("--start-method", "thread"), "--start-method"),
        (("--timeout", "-1"), "--timeout"),
        (("--retries", "x"), "--retries"),
    ]:
        done = run_dispatch(*args(probe, out, *extra))
        assert done.returncode == 2, (extra, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_help_lists_the_options(probe):
    done = run_dispatch(str(probe), "Probe", "--backbone", "mp", "-hb")
    assert done.returncode == 0
    for option in (
        "--num-process",
        "--chunksize",
        "--max-tasks-per-child",
        "--timeout",
        "--retries",
        "--start-method",
    ):
        assert option in done.stdout
