"""The `ray` backbone on a real Ray cluster (a head and a second node on 127.0.0.1, started
once per session): the outputs of an `mp` run, an actor killed mid-run, signals, shards,
operator packages and torch tasks, and a local Ray started and stopped with the run.

The probe task (tests/tasks/mp_probe.py) writes one small file per item; setup() and
teardown() append "s" and "t" to OUT/_workers/PID, and each item's process id goes to
OUT/_pids/KEY, so a test counts actors and finds the process running an item.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    failures,
    run_dir,
    run_dispatch,
    run_record,
    start_dispatch,
    task_file,
    tree,
)
from helpers_engines import probe_leftovers as leftovers
from helpers_engines import probe_outputs as outputs
from helpers_engines import probe_workers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_ray")]

PROBE = task_file("mp_probe")


def probe(out: Path, *extra: str, backbone: str = "ray", n: int = 20, **mixin: object) -> list[str]:
    fills = [f"out={out}", f"n={n}", *(f"{k}={v}" for k, v in mixin.items())]
    return [str(PROBE), "Probe", "--backbone", backbone, "--log-dir", str(out.parent / "logs"),
            *extra, "--mixin", *fills]  # fmt: skip


def workers(out: Path) -> list[str]:
    return sorted(probe_workers(out).values())


def test_the_outputs_and_failures_of_an_mp_run_with_one_setup_per_actor(tmp_path):
    runs = {}
    for backbone in ("mp", "ray"):
        out = tmp_path / backbone / "out"
        done = run_dispatch(*probe(out, backbone=backbone, n=40, raise_on="4,31", crash_on=9))
        assert done.returncode == 1, done.stderr
        runs[backbone] = (outputs(out), failures(out.parent / "logs", "Probe"), done)
    (mp_out, mp_failed, _), (ray_out, ray_failed, done) = runs["mp"], runs["ray"]
    assert ray_out == mp_out and len(ray_out) == 37
    keys = [sorted(f["key"] for f in failed) for failed in (ray_failed, mp_failed)]
    assert keys == [["0004", "0009", "0031"]] * 2  # listed as they failed: not in key order
    by_key = {f["key"]: f for f in ray_failed}
    assert by_key["0004"]["error"] == "ValueError: item 4 is bad"
    assert "raise ValueError" in by_key["0004"]["traceback"]
    assert by_key["0009"]["error"].startswith("its Ray actor died")  # a segfault
    # The cluster's three CPUs over both nodes: three actors, each set up and torn down
    # once, but the one the segfault took (and its replacement, if items were left for it).
    record = run_record(tmp_path / "ray" / "logs", "Probe")
    assert record["ray"] == {**record["ray"], "nodes": 2, "actors": 3, "gpus_per_actor": 0.0}
    marks = workers(tmp_path / "ray" / "out")
    assert set(marks) <= {"s", "st"} and marks.count("st") >= 2, marks  # one setup each
    # the segfaulted one; a replacement still in setup at the end may just be ended
    assert 1 <= marks.count("s") <= 2, marks
    assert "ray: 40 items on 3 actors (2 nodes, cluster at 127.0.0.1:" in done.stderr
    assert "(raylet)" not in done.stderr and "\x1b[" not in done.stderr


def test_an_actor_killed_with_sigkill_costs_only_its_item(tmp_path):
    out = tmp_path / "out"
    # One actor: the rest of the items can only run if a replacement starts.
    job = start_dispatch(*probe(out, "--num-actors", "1", n=16, hang_on=5))
    pid_file = out / "_pids" / "0005"
    wait_for(pid_file.exists, timeout=60)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 1, stderr
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(16) if i != 5]
    failed = failures(tmp_path / "logs", "Probe")
    assert [f["key"] for f in failed] == ["0005"]
    assert failed[0]["error"].startswith("its Ray actor died: ")
    assert workers(out) == ["s", "st"]  # the killed one, its replacement
    # The killed actor left its staging; the rerun removes it and makes the item.
    done = run_dispatch(*probe(out, n=16))
    assert done.returncode == 0, done.stderr
    assert len(outputs(out)) == 16 and not leftovers(out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_new_work_lets_items_finish_and_a_rerun_completes(tmp_path, sig):
    out = tmp_path / "out"
    job = start_dispatch(*probe(out, "--num-actors", "2", n=40, sleep=0.2),
                         start_new_session=True)  # fmt: skip
    wait_for(lambda: len(outputs(out)) >= 4, timeout=60)
    # A Ctrl-C reaches the whole process group (Ray's processes too); SIGTERM the driver.
    if sig == signal.SIGINT:
        os.killpg(job.pid, sig)
    else:
        job.send_signal(sig)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 128 + sig, stderr
    made = outputs(out)
    assert 4 <= len(made) < 40 and all(text.startswith("partial done") for text in made.values())
    assert not leftovers(out)
    record = run_record(tmp_path / "logs", "Probe")
    assert record["outcome"] == f"interrupted by {signal.Signals(sig).name}"
    assert record["counts"]["succeeded"] == len(made) and record["counts"]["not_run"] == 40 - len(
        made
    )
    assert set(workers(out)) == {"st"}  # every actor tore down
    done = run_dispatch(*probe(out, n=40))
    assert done.returncode == 0 and len(outputs(out)) == 40, done.stderr


def test_in_flight_items_past_the_grace_period_are_abandoned(tmp_path):
    out = tmp_path / "out"
    job = start_dispatch(
        *probe(out, "--num-actors", "2", "--grace", "1", n=12, hang_on="3,4,5,6,7,8")
    )
    wait_for(lambda: (out / "_pids").is_dir() and len(list((out / "_pids").iterdir())) >= 2, 60)
    began = time.monotonic()
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stderr
    assert time.monotonic() - began < 30
    record = run_record(tmp_path / "logs", "Probe")
    assert record["counts"]["failed"] == 0 and not failures(tmp_path / "logs", "Probe")
    done = run_dispatch(*probe(out, n=12))
    assert done.returncode == 0 and len(outputs(out)) == 12 and not leftovers(out), done.stderr


def test_shards_compose_and_retries_rerun_failed_items(tmp_path):
    whole = tmp_path / "whole" / "out"
    assert run_dispatch(*probe(whole, backbone="mp", n=30)).returncode == 0
    sharded = tmp_path / "sharded" / "out"
    for shard in ("0/2", "1/2"):
        done = run_dispatch(*probe(sharded, "--shard", shard, n=30))
        assert done.returncode == 0, done.stderr
    assert outputs(sharded) == outputs(whole)
    flaky = tmp_path / "flaky" / "out"
    done = run_dispatch(*probe(flaky, "--retries", "1", n=10, flaky="2,7"))
    assert done.returncode == 0 and len(outputs(flaky)) == 10, done.stderr
    assert "retrying 0002 (1/1)" in done.stderr


def test_an_item_that_cannot_be_rebuilt_in_an_actor_fails_alone(tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(*probe(out, "--num-actors", "1", n=30, garbled_on=17))
    assert done.returncode == 1, done.stderr
    assert sorted(outputs(out)) == [f"{i:04d}.txt" for i in range(30) if i != 17]
    (failed,) = failures(tmp_path / "logs", "Probe")
    assert failed["key"] == "0017" and failed["error"].startswith("its Ray call failed: ")
    assert "not a number" in failed["error"]


def test_what_actors_print_and_log_reaches_the_driver_and_the_task_log(tmp_path):
    done = run_dispatch(task_file("report_printing"), "Printing", "--backbone", "ray",
                        "--num-actors", "2", "--log-dir", tmp_path / "logs")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for i in range(8):
        assert f"printed {i}" in lines and f"logged {i}" in lines, done.stderr
    log = (run_dir(tmp_path / "logs", "Printing") / "task.log").read_text()
    assert sorted(re.findall(r" INFO \[\d+\] logged (\d)$", log, flags=re.M)) == list("01234567")


def test_actors_no_node_can_hold_end_the_run_at_once(tmp_path):
    out = tmp_path / "out"
    began = time.monotonic()
    done = run_dispatch(*probe(out, "--cpus-per-actor", "8", n=4))
    assert done.returncode == 1, done.stderr
    assert (
        "ray: --cpus-per-actor 8: no node of the cluster has that many CPUs (the largest "
        "has 2)" in done.stderr
    )
    assert time.monotonic() - began < 60 and not outputs(out)


def test_a_failing_setup_ends_the_run_with_one_clear_error(tmp_path):
    out = tmp_path / "out"
    done = run_dispatch(*probe(out, n=10, setup_fails="true"))
    assert done.returncode == 1, done.stderr
    assert "task setup failed in a Ray actor: RuntimeError: no model here" in done.stderr
    assert not [name for name in outputs(out)]


def test_an_operator_package_and_a_torch_task_make_what_their_engines_make(tmp_path):
    package = REPO / "tasks" / "operators" / "text_clean"
    data = REPO / "tasks" / "data" / "jsonl"
    made = {}
    for backbone in ("mp", "ray"):
        out = tmp_path / f"clean-{backbone}"
        done = run_dispatch(package, "--backbone", backbone, "--log-dir", tmp_path / "logs",
                            "--mixin", f"input={data}", f"output={out}", "case=lower")  # fmt: skip
        assert done.returncode == 0, done.stderr
        made[backbone] = tree(out)
    assert made["ray"] == made["mp"] and made["mp"]
    pytest.importorskip("torch")
    images = REPO / "tasks" / "data" / "images"
    for backbone in ("torch", "ray"):
        out = tmp_path / f"embed-{backbone}"
        done = run_dispatch(REPO / "tasks" / "image_embed.py", "ImageEmbed", "--backbone", backbone,
                            "--batch-size", "2", "--log-dir", tmp_path / "logs",
                            "--mixin", f"input={images}", f"output={out}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        made[backbone] = {k: json.loads(v) for k, v in tree(out).items()}
    assert made["ray"].keys() == made["torch"].keys() and made["torch"]
    for key, value in made["torch"].items():
        assert made["ray"][key] == pytest.approx(value, abs=1e-4), key


def test_a_local_ray_starts_for_the_run_and_stops_after_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS")
    before = _ray_processes()
    out = tmp_path / "out"
    done = run_dispatch(*probe(out, "--num-actors", "2", n=6))
    assert done.returncode == 0, done.stderr
    assert "ray: 6 items on 2 actors (1 node, a local Ray for this run)" in done.stderr
    assert len(outputs(out)) == 6 and _ray_processes() == before
    wrong = run_dispatch(*probe(out, "--address", "127.0.0.1:9", "--force", n=6))
    assert (
        wrong.returncode == 1 and "cannot join Ray at 127.0.0.1:9: nothing answers" in wrong.stderr
    )


def _ray_processes() -> set[int]:
    """Ray's daemons of this machine (the session cluster's among them)."""
    found = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}
