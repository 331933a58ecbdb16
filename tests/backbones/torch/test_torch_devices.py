"""`--backbone torch --devices ...`: one process per device, fed from one queue.

On the CPU, `cpu,cpu,cpu` stands for three devices; a task slows one of them down by
its name (`DISPATCH_DEVICE`), so dynamic balancing shows in who did how much.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import failures, run_dispatch, run_record, start_dispatch, task_file
from helpers_engines import npu_stand_in_env

torch = pytest.importorskip("torch")


@pytest.fixture
def tasks() -> Path:
    return task_file("devices_uneven")


def devices_args(out: Path, devices: str = "cpu,cpu,cpu", *extra: str, mixin=()) -> list[str]:
    return [
        "Uneven", "--backbone", "torch", "--devices", devices, "--batch-size", "2",
        "--num-workers", "1", *extra, "--mixin", f"output={out}", *mixin,
    ]  # fmt: skip


def run_devices(tasks: Path, out: Path, *extra: str, devices="cpu,cpu,cpu", mixin=()):
    return run_dispatch(tasks, *devices_args(out, devices, *extra, mixin=mixin), cwd=out.parent)


def outputs(out: Path) -> dict[str, dict]:
    """Committed outputs (staging files are hidden: `.NAME.dispatch-part-...`)."""
    return {p.stem: json.loads(p.read_text()) for p in out.glob("[!.]*.json")}


def journal(out: Path, kind: str) -> list[list[str]]:
    path = Path(str(out) + ".journal")
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[1:] for line in lines if line.startswith(kind + " ")]


def record(tmp_path: Path) -> dict:
    """The newest run record of a run from `tmp_path`."""
    return run_record(tmp_path / "dispatch-logs", "Uneven")


def errors_by_key(tmp_path: Path) -> dict[str, str]:
    """Key -> error of the newest run's failures (run from `tmp_path`)."""
    return {row["key"]: row["error"] for row in failures(tmp_path / "dispatch-logs", "Uneven")}


def names(n: int) -> set[str]:
    return {f"i{i:04d}" for i in range(n)}


def test_every_item_once_and_the_fast_devices_take_more(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, mixin=["n=120", "slow=cpu#0", "factor=5"])
    assert done.returncode == 0, done.stderr
    made = outputs(out)
    assert set(made) == names(120)
    ran = [name for name, *_ in journal(out, "ran")]
    assert sorted(ran) == sorted(names(120)), "an item was computed twice or not at all"
    by_device = collections.Counter(v["device"] for v in made.values())
    assert set(by_device) == {"cpu#0", "cpu#1", "cpu#2"}
    assert by_device["cpu#0"] < min(by_device["cpu#1"], by_device["cpu#2"]), by_device
    # One model per device, each in its own process; one summary and one record.
    models = journal(out, "model")
    assert sorted(m[0] for m in models) == ["cpu#0", "cpu#1", "cpu#2"]
    assert len({m[1] for m in models}) == 3
    assert done.stderr.count("dispatch: found 120") == 1
    rec = record(tmp_path)
    assert rec["counts"]["succeeded"] == 120
    devices = {d["device"]: d for d in rec["devices"]}
    assert {k: v["items"] for k, v in devices.items()} == dict(by_device)
    assert all(d["items_per_second"] > 0 and d["restarts"] == 0 for d in devices.values())
    assert rec["config"]["backbone"]["options"]["devices"] == "cpu,cpu,cpu"
    assert rec["config"]["backbone"]["options"]["start_method"] == "fork"
    # A rerun finds everything done and starts no device.
    again = run_devices(tasks, out, mixin=["n=120"])
    assert again.returncode == 0, again.stderr
    assert "nothing to do: 120 items in this shard, all done" in again.stderr
    assert len(journal(out, "model")) == 3


def test_a_failing_item_fails_alone_and_is_retried(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, "--retries", "1", mixin=["n=30", "fail=i0007"])
    assert done.returncode == 1, done.stderr
    assert errors_by_key(tmp_path).keys() == {"i0006", "i0007"}  # batch-mates: one inference call
    assert all("(failed 2 attempts)" in e for e in errors_by_key(tmp_path).values())
    assert set(outputs(out)) == names(30) - {"i0006", "i0007"}
    assert "retrying i0007 (1/1)" in done.stderr


def test_a_poison_item_fails_alone_and_its_batch_mates_are_made(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(
        tasks, out, "--retries", "1", devices="cpu,cpu", mixin=["n=20", "poison=i0007"]
    )
    assert done.returncode == 1, done.stderr
    failed = errors_by_key(tmp_path)
    assert list(failed) == ["i0007"], failed
    assert "killed the device process" in failed["i0007"]
    assert "retrying i0007" not in done.stderr  # never sent again in this run
    assert set(outputs(out)) == names(20) - {"i0007"}
    devices = record(tmp_path)["devices"]
    assert not any(d["dropped"] for d in devices), devices
    rerun = run_devices(tasks, out, devices="cpu,cpu", mixin=["n=20", "poison=i0007"])
    assert rerun.returncode == 1, rerun.stderr
    assert "skipped 19, ran 1" in rerun.stderr
    assert list(errors_by_key(tmp_path)) == ["i0007"]


def test_poison_items_never_drop_a_device_whatever_the_retries(tasks, tmp_path):
    out = tmp_path / "out"
    poison = ["i0003", "i0010", "i0016"]
    done = run_devices(
        tasks,
        out,
        "--retries",
        "6",
        devices="cpu,cpu",
        mixin=["n=24", "poison=" + "+".join(poison)],
    )
    assert done.returncode == 1, done.stderr
    assert "every device was dropped" not in done.stderr and "is dropped" not in done.stderr
    assert sorted(errors_by_key(tmp_path)) == poison
    assert set(outputs(out)) == names(24) - set(poison)


def test_a_poison_item_on_a_single_device_fails_alone(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, "--retries", "2", devices="cpu", mixin=["n=16", "poison=i0005"])
    assert done.returncode == 1, done.stderr
    assert list(errors_by_key(tmp_path)) == ["i0005"]
    assert set(outputs(out)) == names(16) - {"i0005"}
    assert not record(tmp_path)["devices"][0]["dropped"]


def start_devices(tasks: Path, out: Path, *extra: str, mixin=()) -> subprocess.Popen:
    return start_dispatch(tasks, *devices_args(out, "cpu,cpu,cpu", *extra, mixin=mixin),
                          cwd=out.parent)  # fmt: skip


def _wait_for_outputs(proc: subprocess.Popen, out: Path, count: int) -> dict[str, dict]:
    deadline = time.monotonic() + 60
    while True:
        made = outputs(out) if out.exists() else {}
        if len(made) >= count:
            return made
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_a_killed_device_process_is_restarted_and_its_items_run_again(tasks, tmp_path):
    out = tmp_path / "out"
    n = 240
    proc = start_devices(tasks, out, mixin=[f"n={n}", "cost=0.01"])
    made = _wait_for_outputs(proc, out, 12)
    victim = next(v for v in made.values() if v["device"] == "cpu#1")["pid"]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    # No item killed it: what it had taken ran again one at a time, on whichever device.
    assert proc.returncode == 0, stderr
    assert not errors_by_key(tmp_path)
    assert set(outputs(out)) == names(n)
    assert "cpu#1 device process died of SIGKILL" in stderr and "restarting it" in stderr
    assert "go again one at a time" in stderr
    rec = record(tmp_path)
    devices = {d["device"]: d for d in rec["devices"]}
    assert devices["cpu#1"]["restarts"] == 1 and not devices["cpu#1"]["dropped"]
    # The restarted process took work again: a second model on cpu#1.
    assert [m[0] for m in journal(out, "model")].count("cpu#1") == 2
    # What the killed process was writing was removed by the next attempt at that item.
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_device_whose_process_dies_twice_is_dropped_and_the_run_goes_on(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, mixin=["n=60", "kill_on=cpu#2"])
    assert "cpu#2 is dropped from the run" in done.stderr
    # The items it died with ran again one at a time on the others: no item is to blame.
    assert done.returncode == 0, done.stderr
    assert not errors_by_key(tmp_path)
    assert set(outputs(out)) == names(60)
    assert {v["device"] for v in outputs(out).values()} == {"cpu#0", "cpu#1"}
    rec = record(tmp_path)
    devices = {d["device"]: d for d in rec["devices"]}
    assert devices["cpu#2"]["dropped"] and devices["cpu#2"]["restarts"] == 1


def test_every_device_dropped_aborts_the_run_and_a_rerun_completes(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, devices="cpu,cpu", mixin=["n=40", "kill_on=cpu#"])
    assert done.returncode == 1, done.stderr
    assert "cpu#0 is dropped" in done.stderr and "cpu#1 is dropped" in done.stderr
    assert "error: every device was dropped" in done.stderr
    assert not outputs(out)
    rerun = run_devices(tasks, out, devices="cpu,cpu", mixin=["n=40"])
    assert rerun.returncode == 0, rerun.stderr
    assert set(outputs(out)) == names(40)


def test_a_setup_failure_on_one_device_aborts_with_exit_1(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, mixin=["n=20", "crash_setup=cpu#1"])
    assert done.returncode == 1, done.stderr
    assert "cpu#1: task setup failed: RuntimeError: no memory left on cpu#1" in done.stderr


def test_sigterm_stops_every_device_with_143_and_a_rerun_completes(tasks, tmp_path):
    out = tmp_path / "out"
    n = 300
    proc = start_devices(tasks, out, mixin=[f"n={n}", "cost=0.02"])
    _wait_for_outputs(proc, out, 6)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    made = outputs(out)  # every file present is complete JSON
    assert 6 <= len(made) < n
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    rerun = run_devices(tasks, out, mixin=[f"n={n}", "cost=0.0"])
    assert rerun.returncode == 0, rerun.stderr
    assert set(outputs(out)) == names(n)
    assert f"skipped {len(made)}, ran {n - len(made)}" in rerun.stderr
    ran = [name for name, *_ in journal(out, "ran")]
    assert len(ran) >= n and set(ran) == names(n)


def test_spawned_device_processes(tasks, tmp_path):
    out = tmp_path / "out"
    # A lone cpu is named `cpu`, not `cpu#0`: kill_on=cpu# matches nothing.
    done = run_devices(
        tasks, out, "--start-method", "spawn", devices="cpu", mixin=["n=20", "kill_on=cpu#"]
    )
    assert done.returncode == 0, done.stderr
    assert set(outputs(out)) == names(20)
    assert "spawn" in done.stderr


def test_shards_compose_with_devices(tasks, tmp_path):
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        done = run_devices(tasks, out, "--shard", shard, mixin=["n=40"])
        assert done.returncode == 0, done.stderr
    assert set(outputs(out)) == names(40)
    assert sorted(name for name, *_ in journal(out, "ran")) == sorted(names(40))


def test_bad_device_lists_are_one_line_usage_errors(tasks, tmp_path, capsys):
    from dispatcher.cli import main

    out = tmp_path / "out"
    cases = [
        ("gpu", "--devices expects a list like"),
        ("cuda:0,cpu", "one kind of device per run"),
        ("cpu:1", "cpu takes no index"),
        ("cuda:3-1", "is an empty range"),
    ]
    if not torch.cuda.is_available():
        cases.append(("cuda:all", "no cuda device is available"))
    for devices, message in cases:
        assert main([str(tasks), *devices_args(out, devices, mixin=["n=5"])]) == 2, devices
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (devices, err)
    assert main([str(tasks), *devices_args(out, "cpu", "--device", "cpu", mixin=["n=5"])]) == 2
    assert "--device and --devices: give one" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "dispatch-logs").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_all(tasks, tmp_path):
    out = tmp_path / "out"
    done = run_devices(tasks, out, devices="cuda:all", mixin=["n=200"])
    assert done.returncode == 0, done.stderr
    assert set(outputs(out)) == names(200)
    count = torch.cuda.device_count()
    assert {v["device"] for v in outputs(out).values()} <= {f"cuda:{i}" for i in range(count)}


def test_npu_all_with_a_stand_in_torch_npu_spawns_one_process_per_npu(tmp_path):
    tasks = task_file("torch_variants")
    log = tmp_path / "npu.log"
    env = npu_stand_in_env(log, count=2)
    out = tmp_path / "out"
    done = run_dispatch(
        tasks, "Strings", "--backbone", "torch", "--devices", "npu:all", "--num-workers", "0",
        "--batch-size", "2", "--mixin", f"output={out}", "n=24", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(made) == {f"s{i}" for i in range(24)}
    assert {v["y"].split("@")[1] for v in made.values()} <= {"npu:0", "npu:1"}
    assert sorted(log.read_text().splitlines()) == ["set_device 0", "set_device 1"]
    record = run_record(tmp_path / "dispatch-logs")
    options = record["config"]["backbone"]["options"]
    assert options["devices"] == "npu:0,npu:1" and options["start_method"] == "spawn"
    assert options["pin_memory"] is True


def test_a_device_list_is_submittable_from_a_node_without_those_devices(tasks, tmp_path):
    out = tmp_path / "out"
    args = devices_args(out, "cuda:all", mixin=["n=5"])
    done = run_dispatch("submit", "--array", "2", "--dry-run", "--", tasks, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--devices cuda:all" in done.stdout
    bad = devices_args(out, "cuda:x", mixin=["n=5"])
    done = run_dispatch("submit", "--array", "2", "--dry-run", "--", tasks, *bad, cwd=tmp_path)
    assert done.returncode == 2 and "--devices expects a list like" in done.stderr
