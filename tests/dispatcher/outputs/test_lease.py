"""A run alone on its items commits without per-item claims; a second run that may touch
the same items makes both claim again, and nobody removes a live attempt's files.

The lease's locks belong to an open file, not to a process, so two leases taken in one
test process see each other as two runs would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import committed, dispatch_here, run_dispatch, task_file

from dispatcher.outputs import lease as lease_module
from dispatcher.outputs.lease import CHECK_SECONDS, LEASE_NAME, RunLease, shard_slot
from dispatcher.sharding import HashShard, IndexShard, hash_bucket, overlap_class

TASK = task_file("outputs_lease")
ALL = shard_slot("all", [0], 1)


def take(root: Path, slot=ALL) -> RunLease:
    lease = RunLease.take([str(root)], slot, print, lambda: False)
    assert lease is not None
    return lease


def slot_of(*specs) -> tuple[int, list[int]]:
    return shard_slot(*overlap_class(list(specs)))


def taken_later(root: Path, slot=ALL) -> tuple[threading.Thread, list[RunLease]]:
    """A newcomer taking its lease on a thread (it may wait)."""
    got: list[RunLease] = []
    thread = threading.Thread(target=lambda: got.append(take(root, slot)), daemon=True)
    thread.start()
    return thread, got


def test_a_run_alone_says_so_until_a_newcomer_comes_who_waits_for_its_batches(tmp_path):
    first = take(tmp_path)
    assert first.alone()
    thread, got = taken_later(tmp_path)
    time.sleep(0.3)
    assert thread.is_alive() and not got  # waits: batches sent alone may still run
    time.sleep(CHECK_SECONDS)
    assert not first.alone() and first.switching  # noticed; new batches are claimed
    time.sleep(0.3)
    assert thread.is_alive()  # its batches sent alone are not done yet
    first.drained()
    thread.join(5)
    assert got and not got[0].alone() and not first.alone()  # both claim from now on
    assert not first.switching
    got[0].release()
    first.release()


def test_a_newcomer_before_the_first_batch_makes_both_claim_without_waiting(tmp_path):
    first = take(tmp_path)
    second = take(tmp_path)  # the first has not asked yet: no flag, no wait
    assert not first.alone() and not second.alone()
    second.release()
    first.release()


@pytest.mark.parametrize(
    "a, b",
    [
        ((HashShard(0, 4),), (HashShard(1, 4),)),
        ((IndexShard(0, 3),), (IndexShard([1, 2], 3),)),
        ((HashShard(0, 2), HashShard(0, 3)), (HashShard(0, 2), HashShard(2, 3))),
    ],
    ids=["hash", "index", "nested"],
)
def test_runs_of_disjoint_shards_are_each_alone(tmp_path, a, b):
    first, second = take(tmp_path, slot_of(*a)), take(tmp_path, slot_of(*b))
    assert first.alone() and second.alone()
    thread, got = taken_later(tmp_path, slot_of(*a))  # the same shard again: resubmitted
    time.sleep(CHECK_SECONDS)
    assert not first.alone() and second.alone()  # only the run it overlaps claims
    first.drained()
    thread.join(5)
    assert got and not got[0].alone()
    for lease in (got[0], second, first):
        lease.release()


@pytest.mark.parametrize(
    "a, b",
    [
        ((HashShard(0, 4),), (HashShard(0, 4),)),
        ((HashShard(0, 4),), (HashShard(1, 8),)),
        ((HashShard(0, 4),), ()),
        ((HashShard(0, 4),), (IndexShard(1, 4),)),
        ((HashShard(0, 2), HashShard(0, 3)), (HashShard(1, 2), HashShard(1, 3))),
    ],
    ids=["same", "other-count", "unsharded", "other-kind", "other-outer"],
)
def test_runs_whose_items_may_overlap_see_each_other(tmp_path, a, b):
    first, second = take(tmp_path, slot_of(*a)), take(tmp_path, slot_of(*b))
    assert not first.alone() and not second.alone()
    second.release()
    first.release()


def test_the_last_run_out_removes_the_lease_file(tmp_path):
    first = take(tmp_path, slot_of(HashShard(0, 2)))
    second = take(tmp_path, slot_of(HashShard(1, 2)))
    first.release()
    assert (tmp_path / LEASE_NAME).exists()  # the other run still holds it
    second.release()
    assert list(tmp_path.iterdir()) == []


ALONE_AND_KILLED = r"""
import sys, time
from dispatcher.outputs.lease import RunLease, shard_slot
lease = RunLease.take([sys.argv[1]], shard_slot("all", [0], 1), print, lambda: False)
assert lease.alone()
print("alone", flush=True)
time.sleep(600)
"""


def test_a_killed_run_blocks_nobody(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", ALONE_AND_KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "alone"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    started = time.monotonic()
    lease = take(tmp_path)
    assert time.monotonic() - started < 1.0 and lease.alone()
    lease.release()
    assert list(tmp_path.iterdir()) == []  # and its lease file goes with the next run


def test_without_such_locks_there_is_no_lease_and_every_item_is_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "_OFD", (None, None))
    assert RunLease.take([str(tmp_path)], ALL, print, lambda: False) is None


# --- through real runs ------------------------------------------------------------------


def inputs(root: Path, n: int) -> Path:
    src = root / "in"
    src.mkdir()
    for i in range(n):
        (src / f"i{i:02d}.txt").write_text(str(i))
    return src


def dispatch(tmp: Path, cls: str, *args: str, env: dict[str, str] | None = None):
    return run_dispatch(
        TASK, cls, "--log-dir", tmp / "logs", "--mixin", f"input={tmp / 'in'}",
        f"output={tmp / 'out'}", *args, cwd=tmp, env=env,
    )  # fmt: skip


def made(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("[!.]*.json"))}


@pytest.mark.parametrize("cls", ["Probe", "PlainProbe"])
@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_a_run_alone_commits_each_item_without_a_claim(tmp_path, cls, backbone):
    inputs(tmp_path, 6)
    done = dispatch(tmp_path, cls, "--backbone", backbone)
    assert done.returncode == 0, done.stderr
    outputs = made(tmp_path / "out")
    assert len(outputs) == 6 and not any(o["claimed"] for o in outputs.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == [
        f".dispatch-run.{cls}"  # the provenance record; no lease file, no lock file
    ]


HOLD_LEASE = r"""
import sys
from dispatcher.outputs.lease import RunLease, shard_slot
lease = RunLease.take([sys.argv[1]], shard_slot("all", [0], 1), print, lambda: False)
print("present", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("cls", ["Probe", "PlainProbe"])
def test_with_another_run_present_every_item_is_claimed(tmp_path, cls):
    inputs(tmp_path, 4)
    (tmp_path / "out").mkdir()
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, str(tmp_path / "out")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "present"
        done = dispatch(tmp_path, cls, "--backbone", "mp", "--num-process", "2")
        assert done.returncode == 0, done.stderr
    finally:
        other.kill()
        other.wait()
    outputs = made(tmp_path / "out")
    assert len(outputs) == 4 and all(o["claimed"] for o in outputs.values())


@pytest.mark.slow
def test_a_newcomer_waits_until_the_run_alone_claims_then_each_item_is_made_once(tmp_path):
    inputs(tmp_path, 16)
    env = dict(os.environ, LEASE_DELAY="0.25")
    args = ["--log-dir", str(tmp_path / "logs"), "--mixin", f"input={tmp_path / 'in'}"]
    args += [f"output={tmp_path / 'out'}"]
    command = [sys.executable, "-m", "dispatcher", str(TASK), "Probe"]
    first = subprocess.Popen(
        [*command, "--backbone", "mp", "--num-process", "2", "--chunksize", "1", *args],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(committed(tmp_path / "out", "*.json")) < 3:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    second = subprocess.Popen(
        [*command, "--backbone", "serial", *args], cwd=tmp_path, env=env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], errors
    outputs = made(tmp_path / "out")
    assert len(outputs) == 16
    ran = [int(err.split(" ok, ")[0].rsplit("(", 1)[1]) for err in errors]
    assert sum(ran) == 16, errors  # no item made twice: the newcomer waited for the batches
    claimed = [o["claimed"] for o in outputs.values()]
    assert not all(claimed) and any(claimed)  # alone at first, claimed once the second came
    assert [p.name for p in (tmp_path / "out").iterdir() if "dispatch-" in p.name] == [
        ".dispatch-run.Probe"
    ]


def test_a_run_removes_only_the_leftovers_of_its_own_shard(tmp_path):
    src = inputs(tmp_path, 8)
    out = tmp_path / "out"
    out.mkdir()
    names = sorted(p.name for p in src.iterdir())
    mine = next(n for n in names if hash_bucket(n, 2) == 0)
    theirs = next(n for n in names if hash_bucket(n, 2) == 1)
    for name in (mine, theirs):
        (out / f".{name}.dispatch-part-1-ab0.json").write_text("partial")
    # The other shard's run is alone on its items: its staging file may be live.
    other = take(out, slot_of(HashShard(1, 2)))
    try:
        done = dispatch(tmp_path, "Probe", "--backbone", "serial", "--shard", "0/2")
        assert done.returncode == 0, done.stderr
    finally:
        other.release()
    left = sorted(p.name for p in out.iterdir() if "dispatch-part" in p.name)
    assert left == [f".{theirs}.dispatch-part-1-ab0.json"]
    assert sorted(made(out)) == [f"{n}.json" for n in names if hash_bucket(n, 2) == 0]


def test_a_newcomer_waits_a_while_at_most_then_claims_and_removes_no_leftover(
    tmp_path, monkeypatch
):
    src = inputs(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".{sorted(p.name for p in src.iterdir())[0]}.dispatch-part-1-ab0.json"
    stale.write_text("maybe the live file of the run alone")
    first = take(out)
    assert first.alone()  # and it never gets to its next batch
    monkeypatch.setattr(lease_module, "WAIT_LIMIT_SECONDS", 0.3)
    try:
        done = dispatch_here(
            TASK, "Probe", "--backbone", "serial", "--log-dir", tmp_path / "logs",
            "--mixin", f"input={src}", f"output={out}", cwd=tmp_path,
        )  # fmt: skip
    finally:
        first.release()
    assert done.returncode == 0, done.stderr
    assert "is still at its batches after 0 s: claiming every item" in done.stderr
    assert stale.exists()  # perhaps live: left to the next run
    outputs = made(out)
    assert len(outputs) == 3 and all(o["claimed"] for o in outputs.values())
    again = dispatch(tmp_path, "Probe", "--backbone", "serial")
    assert again.returncode == 0 and not stale.exists(), again.stderr


def test_a_worker_killed_while_alone_leaves_no_staging_behind(tmp_path):
    # Alone, its attempt held no claim: nothing says a dead attempt was there but the
    # engine, which removes what it staged once the worker is reaped.
    inputs(tmp_path, 6)
    env = dict(os.environ, LEASE_HANG="i02.txt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", str(TASK), "Probe", "--backbone", "mp",
         "--num-process", "1", "--log-dir", str(tmp_path / "logs"),
         "--mixin", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid_file = tmp_path / "out.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    staging = [p.name for p in (tmp_path / "out").iterdir() if "dispatch-part" in p.name]
    assert staging and not any((tmp_path / "out").glob(".*.dispatch-lock"))  # alone, unclaimed
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "5 ok, 1 failed" in err, err
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == [
        ".dispatch-run.Probe"
    ]
