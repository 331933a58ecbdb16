"""The torch backbone on CPU: every torch-task variant, reruns, failures, devices, signals.

Real `dispatch` processes on real files; load_model, setup and teardown append to an
events file beside the output folder so a test can see what ran, and how often.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    committed,
    failures,
    run_dispatch,
    run_record,
    start_dispatch,
    task_file,
    tree,
)
from helpers_engines import npu_stand_in_env

torch = pytest.importorskip("torch")


@pytest.fixture
def tasks() -> Path:
    return task_file("torch_variants")


def torch_run(tasks: Path, cls: str, out: Path, *args: str, env=None, mixin=()):
    return run_dispatch(
        tasks,
        cls,
        "--backbone",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "3",
        *args,
        "--mixin",
        f"output={out}",
        *mixin,
        cwd=out.parent,
        env=env,
    )


def events(out: Path) -> list[str]:
    path = Path(str(out) + ".events")
    return path.read_text().splitlines() if path.exists() else []


def results(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def errors_by_key(tmp_path: Path) -> dict[str, str]:
    """Key -> error of the run's failures (run from `tmp_path`)."""
    return {row["key"]: row["error"] for row in failures(tmp_path / "dispatch-logs")}


def test_inference_postprocess_each_in_workers_then_reruns_skip_loading(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "Each", out, "--num-workers", "2")
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    assert {k: v["y"] for k, v in got.items()} == {f"i{i:03d}": 2.0 * i for i in range(7)}
    main_pids = {v["pid"] for v in got.values()}
    assert len(main_pids) == 1
    assert {v["loader_pid"] for v in got.values()}.isdisjoint(main_pids)  # loaded in workers
    assert {v["thread"] for v in got.values()} == {"dispatch-postprocess"}
    assert sorted({v["batch_size"] for v in got.values()}) == [1, 3]  # 7 items: 3 + 3 + 1
    assert events(out) == ["setup", "load_model cpu", "teardown"]

    proc = torch_run(tasks, "Each", out, "--num-workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stderr
    assert events(out) == ["setup", "load_model cpu", "teardown"]  # no data, no model

    (out / "i004.json").unlink()
    proc = torch_run(tasks, "Each", out, "--num-workers", "2", mixin=["n=9"])
    assert proc.returncode == 0, proc.stderr
    assert set(results(out)) == {f"i{i:03d}" for i in range(9)}
    assert "ran 3 (3 ok" in proc.stderr
    assert events(out)[3:] == ["setup", "load_model cpu", "teardown"]


def test_failures_are_per_item_and_recorded(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(
        tasks,
        "Each",
        out,
        "--num-workers",
        "0",
        mixin=["n=9", "fail_load=i001", "fail_infer=i004", "fail_post=i007"],
    )
    assert proc.returncode == 1, proc.stderr
    ok = {"i000", "i002", "i006", "i008"}
    assert set(results(out)) == ok
    assert {v["loader_pid"] for v in results(out).values()} == {
        v["pid"] for v in results(out).values()
    }
    failed = errors_by_key(tmp_path)
    assert set(failed) == {"i001", "i003", "i004", "i005", "i007"}
    assert failed["i001"] == "ValueError: cannot decode i001"
    assert failed["i004"] == "inference: RuntimeError: inference exploded"
    assert failed["i003"] == failed["i005"] == failed["i004"]  # the whole batch [3, 4, 5]
    assert failed["i007"] == "OSError: disk full writing i007"
    assert not list(out.glob(".*"))  # no staging leftovers

    proc = torch_run(tasks, "Each", out, "--num-workers", "0", mixin=["n=9"])
    assert proc.returncode == 0, proc.stderr
    assert "skipped 4, ran 5 (5 ok" in proc.stderr


def test_inference_with_batch_postprocess_and_batch_level_is_executed(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "Batch", out, "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    assert {k: (v["y"], v["tag"]) for k, v in got.items()} == {
        f"i{i:03d}": (2.0 * i, f"t-i{i:03d}") for i in range(7)
    }
    (out / "i002.json").unlink()
    proc = torch_run(tasks, "Batch", out, "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 6, ran 1 (1 ok" in proc.stderr  # checked item by item, not by batch
    assert events(out).count("load_model cpu") == 2


def test_process_device_batch_variant(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "Proc", out, "--num-workers", "0", mixin=["n=5", "fail_infer=i004"])
    assert proc.returncode == 1, proc.stderr
    assert {k: v["y"] for k, v in results(out).items()} == {f"i{i:03d}": 2.0 * i for i in range(3)}
    failed = errors_by_key(tmp_path)
    assert set(failed) == {"i003", "i004"}
    assert failed["i003"] == "RuntimeError: inference exploded"


@pytest.mark.slow
def test_own_dataset_is_checked_after_loading_and_model_loads_only_for_work(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(
        tasks, "OwnDataset", out, "--num-workers", "1", "--shard", "0/2", "--shard-mode", "index"
    )
    assert proc.returncode == 0, proc.stderr
    assert {k: v["y"] for k, v in results(out).items()} == {
        f"r{i:03d}": 2.0 * i for i in (0, 2, 4, 6)
    }
    proc = torch_run(tasks, "OwnDataset", out, "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert set(results(out)) == {f"r{i:03d}" for i in range(7)}
    assert events(out).count("get_dataset") == 2  # built once per run (plan and loader share it)
    assert events(out).count("load_model cpu") == 2
    proc = torch_run(tasks, "OwnDataset", out, "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert events(out).count("load_model cpu") == 2  # rows loaded, all found done: no model


def test_own_dataset_without_done_check_loads_the_model_while_rows_load(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "OwnDatasetNoCheck", out, "--num-workers", "1", mixin=["n=4"])
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    assert {k: v["y"] for k, v in got.items()} == {f"r{i:03d}": 2.0 * i for i in range(4)}
    # The first batch's rows were loading when the model loaded, not before it.
    assert all(v["model_first"] for v in got.values()), got
    assert events(out) == ["setup", "load_model cpu", "teardown"]


@pytest.mark.slow
def test_own_dataloader_with_batch_level_check_and_a_failing_row(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "OwnLoader", out, mixin=["fail_post=r004"])
    assert proc.returncode == 1, proc.stderr
    assert set(results(out)) == {f"r{i:03d}" for i in range(7)} - {"r004"}
    failed = errors_by_key(tmp_path)
    assert list(failed.values()) == [
        "1 of 7 rows failed; first r004: OSError: disk full writing r004"
    ]
    proc = torch_run(tasks, "OwnLoader", out)
    assert proc.returncode == 0, proc.stderr
    assert set(results(out)) == {f"r{i:03d}" for i in range(7)}
    proc = torch_run(tasks, "OwnLoader", out)
    assert proc.returncode == 0, proc.stderr
    assert events(out).count("load_model cpu") == 2  # the third run found every batch done


def test_device_errors_are_one_line_usage_errors(tasks, tmp_path, capsys):
    from dispatcher.cli import main

    base = [str(tasks), "Each", "--backbone", "torch", "--mixin", f"output={tmp_path / 'o'}"]
    assert main([*base, "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "dispatch: error: --device expects auto, cpu, mps, cuda[:N] or npu[:N], got 'tpu'"
    ]
    if importlib_util_find("torch_npu") is None:
        assert main([*base, "--device", "npu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "needs the torch_npu package" in err[0]
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda:0"]) == 2
        assert "no cuda device is available" in capsys.readouterr().err
    assert main([*base, "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "dispatch-logs").exists()


def importlib_util_find(name: str):
    import importlib.util

    return importlib.util.find_spec(name)


def test_npu_branch_with_a_stand_in_torch_npu(tasks, tmp_path):
    log = tmp_path / "npu.log"
    env = npu_stand_in_env(log)
    out = tmp_path / "out"
    proc = run_dispatch(
        tasks,
        "Strings",
        "--backbone",
        "torch",
        "--device",
        "npu",
        "--num-workers",
        "0",
        "--mixin",
        f"output={out}",
        "n=4",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert {k: v["y"] for k, v in results(out).items()} == {
        f"s{i}": f"S{i}@npu:0" for i in range(4)
    }
    assert log.read_text() == "set_device 0\n"
    record = run_record(tmp_path / "dispatch-logs")
    options = record["config"]["backbone"]["options"]
    assert options["device"] == "npu:0" and options["pin_memory"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device(tasks, tmp_path):
    out = tmp_path / "out"
    proc = run_dispatch(
        tasks,
        "Each",
        "--backbone",
        "torch",
        "--device",
        "cuda",
        "--mixin",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert {k: v["y"] for k, v in results(out).items()} == {f"i{i:03d}": 2.0 * i for i in range(7)}
    assert events(out)[1].startswith("load_model cuda")


@pytest.mark.slow
def test_a_killed_loader_worker_fails_its_item_only(tasks, tmp_path):
    out = tmp_path / "out"
    proc = torch_run(tasks, "Each", out, "--num-workers", "2", mixin=["n=12", "kill_load=i007"])
    assert proc.returncode == 1, proc.stderr
    assert set(results(out)) == {f"i{i:03d}" for i in range(12)} - {"i007"}
    failed = errors_by_key(tmp_path)
    assert set(failed) == {"i007"}
    assert all("exited unexpectedly" in error for error in failed.values())


@pytest.mark.slow
def test_sigterm_stops_between_batches_and_the_rerun_completes(tasks, tmp_path):
    out = tmp_path / "out"
    proc = start_dispatch(
        tasks, "Each", "--backbone", "torch", "--device", "cpu", "--batch-size", "2",
        "--num-workers", "1", "--mixin", f"output={out}", "n=40", "sleep=0.25",
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(committed(out, "*.json")) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    done = results(out)  # every file present is complete JSON
    assert 2 <= len(done) < 40
    assert all(v["y"] == 2.0 * int(k[1:]) for k, v in done.items())
    assert not list(out.glob(".*"))
    assert events(out)[-1] == "teardown"
    rerun = torch_run(tasks, "Each", out, "--num-workers", "1", mixin=["n=40"])
    assert rerun.returncode == 0, rerun.stderr
    assert set(results(out)) == {f"i{i:03d}" for i in range(40)}
    assert f"skipped {len(done)}, ran {40 - len(done)}" in rerun.stderr


# --- the example task (tasks/image_embed.py) ------------------------------------------------


def test_image_embed_example_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "embeddings"
    images = REPO / "tasks" / "data" / "images"
    cmd = [
        REPO / "tasks" / "image_embed.py",
        "ImageEmbed",
        "--backbone",
        "torch",
        "--device",
        "cpu",
        "--mixin",
        f"input={images}",
        f"output={out}",
    ]
    proc = run_dispatch(*cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr  # a clean run prints no library warnings
    sources = sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file())
    written = sorted(tree(out))
    assert written == [s + ".json" for s in sources]
    got = {s: json.loads((out / (s + ".json")).read_text()) for s in sources}
    for source, record in got.items():
        assert record["source"] == source
        assert len(record["phash"]) == 16 and len(record["embedding"]) == 64
        assert abs(sum(v * v for v in record["embedding"]) - 1.0) < 1e-3

    def distance(a: str, b: str) -> int:
        return bin(int(got[a]["phash"], 16) ^ int(got[b]["phash"], 16)).count("1")

    # The near duplicate is close; unrelated images are not.
    assert distance("scene.png", "scene_copy.jpg") <= 6
    assert distance("scene.png", "noise.png") >= 16
    rerun = run_dispatch(*cmd, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "nothing to do" in rerun.stderr
    assert sorted(tree(out)) == written


def test_sample_images_are_small_and_regenerate_identically(tmp_path):
    images = REPO / "tasks" / "data" / "images"
    shipped = {
        p.relative_to(images).as_posix(): p.read_bytes() for p in images.rglob("*") if p.is_file()
    }
    assert len(shipped) >= 4 and sum(map(len, shipped.values())) < 500_000
    proc = subprocess.run(
        [sys.executable, str(REPO / "tasks" / "data" / "make_images.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    made = {
        p.relative_to(tmp_path).as_posix(): p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    assert set(made) == set(shipped)
    assert all(made[name] == shipped[name] for name in made if name.endswith(".png"))


def test_a_batch_outliving_the_grace_period_is_abandoned(tasks, tmp_path):
    out = tmp_path / "out"
    proc = start_dispatch(
        tasks, "Each", "--backbone", "torch", "--device", "cpu", "--batch-size", "2",
        "--num-workers", "1", "--grace", "0.5", "--mixin", f"output={out}", "n=6", "sleep=60",
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "load_model cpu" not in events(out):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # inside the first batch's inference
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert time.monotonic() - sent < 10
    assert "not run 6" in stderr
    assert not out.exists() or not list(out.iterdir())
    assert events(out)[-1] == "teardown"
