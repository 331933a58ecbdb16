"""`sys.exit()`, KeyboardInterrupt and GeneratorExit raised by task code, and SIGTERM in torch runs.

A task's BaseException is that item's failure (or, outside an item, the run's abort with
exit code 1): never a success, never a hang, never a thread of the dispatcher dying and
leaving the run waiting.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import failure_reasons, run_dispatch, task_file


@pytest.fixture
def plain() -> Path:
    return task_file("exits_plain")


def written(out: Path) -> set[str]:
    return {p.stem for p in out.glob("*.txt")} if out.exists() else set()


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_base_exceptions_in_items_fail_those_items_only(plain, tmp_path, backbone):
    out = tmp_path / "out"
    extra = ["--num-process", "2"] if backbone == "mp" else []
    errors = {"exit0": "SystemExit: 0", "exit3": "SystemExit: 3",
              "interrupt": "KeyboardInterrupt", "genexit": "GeneratorExit"}  # fmt: skip
    for kind, line in errors.items():
        proc = run_dispatch(plain, "Exits", "--backbone", backbone, *extra, "--mixin",
                            f"out={out}", "on=2,5", f"kind={kind}", cwd=tmp_path, timeout=120)  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "ran 10 (8 ok, 2 failed)" in proc.stderr, proc.stderr
        assert written(out) == {f"{i:03d}" for i in range(10)} - {"002", "005"}
        failed = failure_reasons(tmp_path / "dispatch-logs")
        assert set(failed) == {"002", "005"}, failed
        assert all(e == f"{line} (raised by the task)" for e in failed.values()), failed
        assert "died" not in proc.stderr and "exited with code" not in proc.stderr
        shutil.rmtree(out)
        shutil.rmtree(tmp_path / "dispatch-logs")


@pytest.mark.parametrize("hook", ["setup", "teardown"])
@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_base_exception_in_setup_or_teardown_never_reports_success(plain, tmp_path, hook, backbone):
    out = tmp_path / "out"
    extra = ["--num-process", "1"] if backbone == "mp" else []
    proc = run_dispatch(plain, "Exits", "--backbone", backbone, *extra, "--mixin", f"out={out}",
                        f"hook={hook}", "kind=exit0", cwd=tmp_path, timeout=120)  # fmt: skip
    assert "SystemExit: 0 (raised by the task)" in proc.stderr, proc.stderr
    assert "dispatch: run record" in proc.stderr  # the summary was written
    if hook == "setup":
        assert proc.returncode == 1, proc.stderr
        assert "success" not in proc.stderr
        assert written(out) == set()
    else:  # as for an exception in teardown: noted, the items' results stand
        assert proc.returncode == 0, proc.stderr
        assert written(out) == {f"{i:03d}" for i in range(10)}


# --- torch ---------------------------------------------------------------------------------


@pytest.fixture
def torch_tasks() -> Path:
    pytest.importorskip("torch")
    return task_file("exits_torch")


def torch_results(out: Path) -> set[str]:
    return {p.stem for p in out.glob("*.json")} if out.exists() else set()


BATCH_OF_I013 = {f"i{i:03d}" for i in range(12, 16)}  # --batch-size 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "hook", "workers", "failed"),
    [
        ("Each", "postprocess_each", "2", {"i013"}),
        ("Batch", "postprocess", "2", BATCH_OF_I013),
        ("Each", "inference", "2", BATCH_OF_I013),
        ("Each", "load_data", "0", {"i013"}),
        ("Each", "load_data", "2", {"i013"}),
    ],
)
def test_sys_exit_in_torch_hooks_fails_those_items_and_the_run_goes_on(
    torch_tasks, tmp_path, cls, hook, workers, failed
):
    out = tmp_path / "out"
    proc = run_dispatch(torch_tasks, cls, "--backbone", "torch", "--device", "cpu",
                        "--batch-size", "4", "--num-workers", workers, "--mixin", f"out={out}",
                        f"hook={hook}", cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert torch_results(out) == {f"i{i:03d}" for i in range(40)} - failed
    errors = failure_reasons(tmp_path / "dispatch-logs")
    assert set(errors) == failed, errors
    assert all("SystemExit: 0 (raised by the task)" in e for e in errors.values()), errors
    assert f"ran 40 ({40 - len(failed)} ok, {len(failed)} failed)" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_sys_exit_in_load_model_aborts_the_torch_run(torch_tasks, tmp_path):
    out = tmp_path / "out"
    proc = run_dispatch(torch_tasks, "Each", "--backbone", "torch", "--device", "cpu",
                        "--num-workers", "0", "--mixin", f"out={out}", "hook=load_model",
                        cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "load_model failed: SystemExit: 0 (raised by the task)" in proc.stderr
    assert "not run 40" in proc.stderr and "success" not in proc.stderr


def test_a_task_exit_escaping_a_backbone_is_a_crash_not_a_success(plain, tmp_path, monkeypatch,
                                                                    capsys):  # fmt: skip
    # A backbone (a third-party one, say) that calls task code without attempt().
    import dispatcher
    from backbones.serial import SerialBackbone

    def bare_loop(self, stage, items, reporter, stop):
        for key, payload in items:
            stage.write_row(0, 1, stage.load(key, payload), None, {})

    monkeypatch.setattr(SerialBackbone, "run", bare_loop)
    monkeypatch.chdir(tmp_path)
    result = dispatcher.run((str(plain), "Exits"), {"out": str(tmp_path / "out"), "on": 3,
                            "kind": "exit0"}, backbone="serial")  # fmt: skip
    err = capsys.readouterr().err
    assert result.exit_code == 1, err
    assert "aborted: the backbone crashed: SystemExit: 0 (raised by the task)" in err
    record = json.loads(next((tmp_path / "dispatch-logs").rglob("run.json")).read_text())
    assert record["exit_code"] == 1 and record["outcome"].startswith("aborted")
    assert os.path.abspath(result.record_path) == str(
        next((tmp_path / "dispatch-logs").rglob("run.json"))
    )


# --- SIGTERM: always 143 -------------------------------------------------------------------


def test_sigterm_during_an_import_that_swallows_exceptions_still_exits_143(tmp_path):
    # Some extension modules (torch among them) catch BaseException while importing: a
    # signal must not depend on an exception surviving the import.
    task = task_file("exits_swallowing_import")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "dispatcher", str(task),
                             "Slow", "--backbone", "serial"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    # -X importtime lines show when dispatcher.cli is in place (its handler installed soon after)
    deadline = time.monotonic() + 60
    seen = ""
    while "dispatcher.loader" not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen
        seen += proc.stderr.readline()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, seen + err
    assert list(work.iterdir()) == []


def start_busy(task: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    return subprocess.Popen([sys.executable, "-m", "dispatcher", str(task), "Busy",
                             "--backbone", "torch", "--device", "cpu", "--batch-size", "4",
                             "--num-workers", "2", *args, "--mixin", f"out={out}"],
                            cwd=out.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for_output(proc: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.iterdir())):  # the run is under way
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)


@pytest.mark.slow
def test_after_sigterm_no_thread_of_the_torch_run_is_left_at_exit(tmp_path):
    # A daemon thread still inside torch while the interpreter exits is ended in C++ code:
    # `terminate called without an active exception`, exit 134 instead of 143.
    pytest.importorskip("torch")
    task = task_file("exits_busy")
    for args in [(), ("--postprocess-queue", "1")]:
        out = tmp_path / "out"
        proc = start_busy(task, out, *args)
        wait_for_output(proc, out)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        left = json.loads(Path(str(out) + ".threads").read_text())
        assert [name for name in left if name.startswith("dispatch-")] == [], left
        shutil.rmtree(out)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigterm_at_random_moments_of_a_torch_run_always_exits_143(tmp_path):
    """SIGTERM mid-run (DataLoader workers, fetch and postprocessing threads all busy).

    DISPATCH_SIGTERM_LOOPS sets the number of runs (default 5, to keep the suite short; 100
    for a measurement).
    """
    pytest.importorskip("torch")
    task = task_file("exits_busy")
    loops = int(os.environ.get("DISPATCH_SIGTERM_LOOPS", "5"))
    rng = random.Random(int(os.environ.get("DISPATCH_SIGTERM_SEED", "0")))
    codes: dict[int, int] = {}
    seconds: list[float] = []
    bad: list[str] = []
    for i in range(loops):
        out = tmp_path / f"out{i}"
        proc = start_busy(task, out)
        wait_for_output(proc, out)
        time.sleep(rng.uniform(0.0, 1.0))
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        seconds.append(time.monotonic() - sent)
        codes[proc.returncode] = codes.get(proc.returncode, 0) + 1
        if proc.returncode != 143 or "terminate called" in err or "Fatal Python" in err:
            bad.append(f"run {i}: exit {proc.returncode}\n{err[-2000:]}")
        else:
            assert "interrupted by SIGTERM" in err, err
        shutil.rmtree(out, ignore_errors=True)
    print(f"\n{loops} SIGTERMs: exit codes {codes}; seconds to exit: min {min(seconds):.2f}, "
          f"median {statistics.median(seconds):.2f}, max {max(seconds):.2f}")  # fmt: skip
    assert not bad, "\n".join(bad)
