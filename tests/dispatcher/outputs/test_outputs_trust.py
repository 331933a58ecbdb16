"""Outputs never lie and never destroy what the user owns: overlapping roots, commits over
things that are not earlier outputs, nesting keys, concurrent attempts at one item, and
every kind of leftover a killed attempt can leave."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, committed, run_dispatch, task_file, tree

from dispatcher.outputs.records import is_provenance_name

TASK = task_file("outputs_trust")

HOLD = r"""
import os, sys, time
from dispatcher.outputs.claims import Claim
from dispatcher.outputs.lease import RunLease, shard_slot
# As every run with items to make: present at the output root, then claiming its item.
lease = RunLease.take([os.path.dirname(sys.argv[1])], shard_slot("all", [0], 1), print, lambda: False)
claim = Claim(sys.argv[1])
claim.acquire()
print("held", flush=True)
sys.stdin.readline()
claim.release()
lease.release()
"""


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    for name in ("a", "b", "c"):
        (src / f"{name}.txt").parent.mkdir(parents=True, exist_ok=True)
        (src / f"{name}.txt").write_text(name)
    return tmp_path


def dispatch(ds: Path, cls: str, *args: str, inp: str | Path | None = None,
             out: str | Path | None = None, env: dict[str, str] | None = None,
             backbone: str = "serial") -> subprocess.CompletedProcess[str]:  # fmt: skip
    return run_dispatch(
        TASK, cls, "--backbone", backbone, "--log-dir", ds / "logs",
        "--mixin", f"input={inp or ds / 'in'}", f"output={out or ds / 'out'}", *args,
        cwd=ds, env=env,
    )  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def ours(root: Path) -> list[str]:
    """The dispatcher's leftovers under `root` (the provenance record is none)."""
    return sorted(
        p.name for p in root.rglob(".*") if "dispatch-" in p.name and not is_provenance_name(p.name)
    )


def hold_claim(final: Path) -> subprocess.Popen[str]:
    """Another run's live attempt: a process present at the output root (`final`'s folder)
    and holding the claim of the item whose output is `final`."""
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(final)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env, cwd=final.parent,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def let_go(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


# --- 1. an output root never overlaps the input root ------------------------------------


@pytest.mark.parametrize("spelling", ["same", "symlink", "input_inside_output"])
def test_an_output_root_over_the_input_root_is_refused_before_anything_is_written(ds, spelling):
    inp, out = ds / "in", ds / "in"
    if spelling == "symlink":
        (ds / "alias").symlink_to(ds / "in")
        out = ds / "alias"
    elif spelling == "input_inside_output":
        out = ds
    before = snapshot(ds)
    done = dispatch(ds, "Folders", inp=inp, out=out)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatch: error: mixin 'output': "), lines
    assert "input root" in lines[0]
    assert snapshot(ds) == before  # the inputs intact, no log directory, nothing


@pytest.mark.parametrize("spelling", ["inside", "symlink"])
def test_an_output_root_inside_the_input_root_is_refused_before_anything_is_written(ds, spelling):
    out = ds / "in" / "out"
    if spelling == "symlink":  # another spelling of a folder inside the input root
        (ds / "in" / "sub").mkdir(exist_ok=True)
        (ds / "alias").symlink_to(ds / "in" / "sub")
        out = ds / "alias" / "out"
    before = snapshot(ds)
    done = dispatch(ds, "Files", out=out)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"dispatch: error: mixin 'output': output root {out} is inside the "
                           f"input root {ds / 'in'}")  # fmt: skip
    assert "would read its outputs as inputs" in line
    assert snapshot(ds) == before  # nothing written: no output root, no log directory


def test_a_folder_commit_never_replaces_a_file_or_link_and_a_file_commit_never_a_folder(ds):
    out = ds / "out"
    out.mkdir()
    (out / "a.txt").write_text("the user's file")  # where Folders would put a folder
    (ds / "elsewhere").mkdir()
    (out / "b.txt").symlink_to(ds / "elsewhere")  # a link to a folder
    done = dispatch(ds, "Folders", "--force")
    assert done.returncode == 1, done.stderr
    assert "1 ok, 2 failed" in done.stderr
    assert re.search(
        r"failed a\.txt: OutputConflict: .*a\.txt is a file, not an earlier folder", done.stderr
    )
    assert (out / "a.txt").read_text() == "the user's file"
    assert os.readlink(out / "b.txt") == str(ds / "elsewhere") and not os.listdir(ds / "elsewhere")
    assert json.loads((out / "c.txt" / "m.json").read_text()) == {"input": "c.txt"}
    assert ours(out) == []

    files = ds / "fout"
    (files / "a.txt.json").mkdir(parents=True)  # a folder where a file output goes
    (files / "a.txt.json" / "keep").write_text("mine")
    done = dispatch(ds, "Files", "--force", out=files)
    assert done.returncode == 1
    assert "OutputConflict" in done.stderr and "is a folder, not an earlier file" in done.stderr
    assert (files / "a.txt.json" / "keep").read_text() == "mine"
    assert ours(files) == []


def test_an_earlier_output_of_the_same_kind_is_replaced_under_force(ds):
    assert dispatch(ds, "Folders").returncode == 0
    (ds / "out" / "a.txt" / "old-extra").write_text("from an earlier version")
    done = dispatch(ds, "Folders", "--force")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(ds / "out" / "a.txt")) == ["m.json"]
    assert ours(ds / "out") == []


# --- 3. outputs that would nest inside each other ------------------------------------------


def listed(ds: Path, names: list[str]) -> Path:
    path = ds / "list.jsonl"
    path.write_text("".join(json.dumps({"name": n}) + "\n" for n in names))
    return path


@pytest.mark.parametrize(
    ("cls", "names", "outer", "inner"),
    [
        ("ListedFolders", ["w", "x", "x/y", "x-1", "z"], "x", "x/y"),
        ("ListedFolders", ["p", "p/q/r"], "p", "p/q/r"),
        ("ListedFiles", ["x", "x.json/y", "y"], "x", "x.json/y"),
    ],
)
def test_keys_whose_outputs_nest_are_refused_naming_both(ds, cls, names, outer, inner):
    jsonl = listed(ds, names)
    before = snapshot(ds)
    for extra in ((), ("--plan",)):
        done = dispatch(ds, cls, *extra, inp=jsonl)
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert line.startswith("dispatch: error: items whose outputs nest"), line
        assert f"{outer!r} holds {inner!r}" in line
        assert snapshot(ds) == before


def test_many_nesting_keys_are_counted(ds):
    names = [f"k{i}" for i in range(5)] + [f"k{i}/sub" for i in range(5)]
    done = dispatch(ds, "ListedFolders", inp=listed(ds, names))
    assert done.returncode == 2
    assert "(and 2 more)" in done.stderr


def test_keys_that_merely_share_a_prefix_run(ds):
    done = dispatch(ds, "ListedFolders", inp=listed(ds, ["x", "x-1", "xy/z", "x.d/y"]))
    assert done.returncode == 0, done.stderr
    again = dispatch(ds, "ListedFolders", "--plan", inp=ds / "list.jsonl")
    assert "to run:         0" in again.stdout


# --- 2. concurrent attempts at one item ------------------------------------------------------


WRITER = r"""
import sys, time
from dispatcher.outputs import atomic_write
path, byte, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
for _ in range(int(sys.argv[4])):
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            for i in range(8):
                fh.write(byte * (size // 8))
                fh.flush()
                time.sleep(0.002)
"""


def test_concurrent_writers_of_one_path_each_commit_only_their_own_complete_bytes(tmp_path):
    final = tmp_path / "f1.txt.json"
    size = 4136
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(final), b, str(size), "30"], env=env, cwd=tmp_path
        )
        for b in "ABC"
    ]
    while any(w.poll() is None for w in writers):
        if final.exists():
            body = final.read_bytes()
            assert body in (b"A" * size, b"B" * size, b"C" * size), (len(body), set(body))
        time.sleep(0.001)
    assert [w.returncode for w in writers] == [0, 0, 0]
    assert final.read_bytes() in (b"A" * size, b"B" * size, b"C" * size)
    assert [p.name for p in tmp_path.iterdir()] == ["f1.txt.json"]


COUNTER = r"""
import sys, time
from dispatcher.outputs.claims import Claim
final, counter = sys.argv[1], sys.argv[2]
for _ in range(int(sys.argv[3])):
    with Claim(final):
        value = int(open(counter).read())
        time.sleep(0.001)
        open(counter, "w").write(str(value + 1))
"""


def test_a_claim_is_held_by_one_attempt_at_a_time(tmp_path):
    counter = tmp_path / "count"
    counter.write_text("0")
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    procs = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(tmp_path / "x.json"), str(counter), "40"], env=env, cwd=tmp_path)
        for _ in range(3)
    ]  # fmt: skip
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert counter.read_text() == "120"  # no lost update: never two holders at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["count"]  # the lock file unlinked


def test_an_item_another_run_is_committing_is_waited_for_then_counted_as_made_elsewhere(ds):
    out = ds / "out"
    out.mkdir()
    holder = hold_claim(out / "b.txt.json")
    run = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", TASK, "Files", "--backbone", "serial",
         "--log-dir", ds / "logs", "--mixin", f"input={ds / 'in'}", f"output={out}"],
        cwd=ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "a.txt.json").exists():  # the run reached b and waits for it
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert run.poll() is None and not (out / "b.txt.json").exists()
    # The other run commits b (with its own bytes) and lets go.
    (out / "b.txt.json").write_text('{"input": "b.txt", "pid": 0}')
    let_go(holder)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "ran 2 (2 ok, 0 failed), 1 made by another run" in err
    assert json.loads((out / "b.txt.json").read_text())["pid"] == 0  # not made again
    assert ours(out) == []
    record = json.loads(next((ds / "logs").rglob("run.json")).read_text())
    assert record["counts"]["made_elsewhere"] == 1 and record["counts"]["not_run"] == 0


def test_an_item_whose_holder_failed_is_made_by_the_waiting_run(ds):
    out = ds / "out"
    out.mkdir()
    holder = hold_claim(out / "a.txt.json")
    run = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", TASK, "Files", "--backbone", "mp",
         "--num-process", "1", "--log-dir", ds / "logs", "--mixin", f"input={ds / 'in'}", f"output={out}"],
        cwd=ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    assert run.poll() is None and not (out / "a.txt.json").exists()
    let_go(holder)  # without committing anything: the waiting run must make it
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "ran 3 (3 ok, 0 failed)" in err and "another run" not in err
    assert json.loads((out / "a.txt.json").read_text())["input"] == "a.txt"


def test_a_run_waiting_for_a_claim_still_honours_sigterm(ds):
    out = ds / "out"
    out.mkdir()
    holder = hold_claim(out / "a.txt.json")
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", TASK, "Files", "--backbone", "serial",
             "--grace", "1", "--log-dir", ds / "logs", "--mixin", f"input={ds / 'in'}",
             f"output={out}"],
            cwd=ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not list((ds / "logs").rglob("run.json")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 143, err
        assert not (out / "a.txt.json").exists()
    finally:
        let_go(holder)
    assert ours(out) == []


# --- 7. leftovers ------------------------------------------------------------------------


def test_a_rerun_with_nothing_to_do_removes_every_kind_of_leftover_and_plan_counts_them(ds):
    assert dispatch(ds, "Folders").returncode == 0
    out = ds / "out"
    retired = out / ".a.dispatch-old.txt"  # a kill -9 during a --force folder replacement
    retired.mkdir()
    for i in range(2002):
        (retired / f"{i}.clip").write_text("x")
    (out / ".b.dispatch-part-123-00ff.txt").mkdir()  # a killed attempt's staging folder
    (out / ".b.dispatch-part-123-00ff.txt" / "m.json").write_text("{")
    (out / ".c.txt.dispatch-lock").write_text("")  # a killed holder's lock file
    (out / ".c.dispatch-part.txt").mkdir()  # an older version's fixed staging name
    before = snapshot(out)
    plan = dispatch(ds, "Folders", "--plan")
    assert plan.returncode == 0
    assert "to run:         0" in plan.stdout and "leftovers:      4" in plan.stdout, plan.stdout
    assert snapshot(out) == before  # --plan removes nothing
    done = dispatch(ds, "Folders")
    assert done.returncode == 0 and "nothing to do" in done.stderr, done.stderr
    assert ours(out) == []
    assert sorted(n for n in os.listdir(out) if not is_provenance_name(n)) == [
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    assert "leftovers" not in dispatch(ds, "Folders", "--plan").stdout


def test_file_output_leftovers_are_removed_by_a_rerun_too(ds):
    assert dispatch(ds, "Files").returncode == 0
    out = ds / "out"
    (out / ".a.txt.dispatch-part-77-abcdef01.json").write_text('{"inp')
    (out / ".b.txt.json.dispatch-lock").write_text("")
    assert dispatch(ds, "Files").returncode == 0
    assert ours(out) == []


def test_a_live_attempts_staging_is_never_removed(ds):
    assert dispatch(ds, "Files").returncode == 0
    out = ds / "out"
    holder = hold_claim(out / "a.txt.json")
    try:
        staging = out / ".a.txt.dispatch-part-1-aa.json"
        staging.write_text("being written")
        done = dispatch(ds, "Files")
        assert done.returncode == 0 and "nothing to do" in done.stderr
        assert staging.read_text() == "being written"
    finally:
        let_go(holder)
    assert dispatch(ds, "Files").returncode == 0
    assert ours(out) == []


@pytest.mark.slow
def test_the_sigkill_after_the_grace_period_leaves_no_staging(ds):
    started = ds / "started"
    env = {"TRUST_STARTED": str(started)}
    run = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", TASK, "Stubborn", "--backbone", "mp",
         "--num-process", "1", "--grace", "0.5", "--log-dir", ds / "logs", "--mixin",
         f"input={ds / 'in'}", f"output={ds / 'out'}"],
        cwd=ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not started.exists():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert [p.name for p in (ds / "out").iterdir() if "dispatch-part" in p.name]
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert ours(ds / "out") == []
    assert not (ds / "out" / "a.txt.json").exists()


@pytest.mark.slow
def test_the_pool_folder_of_a_sigkilled_run_is_removed_by_the_next_run(ds, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "TRUST_DELAY": "30"}
    run = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", TASK, "Files", "--backbone", "mp", "--num-process", "1",
         "--log-dir", ds / "logs", "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}"],
        cwd=ds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp.glob(f"dispatch-mp-{run.pid}-*")):
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert list(tmp.glob(f"dispatch-mp-{run.pid}-*"))  # a SIGKILLed parent cannot clean up
    foreign = tmp / "dispatch-mp-notapid"  # not named by a pid: never ours to judge
    foreign.mkdir()
    done = run_dispatch(
        TASK, "Files", "--backbone", "mp", "--num-process", "1", "--log-dir", ds / "logs",
        "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}", cwd=ds,
        env={"TMPDIR": str(tmp)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["dispatch-mp-notapid"]
    assert ours(ds / "out") == []


TORCH_TASK = task_file("outputs_trust_torch")


def test_a_batch_claims_all_its_items_without_holding_any_while_it_waits(ds):
    pytest.importorskip("torch")
    from dispatcher.outputs.claims import Claim

    out = ds / "out"
    out.mkdir()
    holder = hold_claim(out / "b.txt.json")
    run = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", TORCH_TASK, "Whole", "--backbone", "torch",
         "--device", "cpu", "--batch-size", "3", "--num-workers", "0", "--log-dir", ds / "logs",
         "--mixin", f"input={ds / 'in'}", f"output={out}"],
        cwd=ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list((ds / "logs").rglob("run.json")):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)  # the batch of a, b, c is loaded and waits for b
        assert run.poll() is None and not committed(out, "*.json")
        for name in ("a", "c"):  # held by nobody while the batch waits
            claim = Claim(str(out / f"{name}.txt.json"))
            assert claim.try_acquire()
            claim.release()
    finally:
        let_go(holder)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "ran 3 (3 ok, 0 failed)" in err
    assert sorted(tree(out)) == ["a.txt.json", "b.txt.json", "c.txt.json"]


def test_without_file_locks_outputs_are_still_written_whole_and_nothing_is_removed(
    tmp_path, monkeypatch
):
    # A filesystem mounted without flock support (Lustre's default, some NFS setups).
    import errno
    import fcntl

    from dispatcher import outputs

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    final = tmp_path / "a.json"
    with outputs.atomic_write(final) as tmp:
        Path(tmp).write_text("whole")
    assert final.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no lock file left
    staging = tmp_path / ".a.dispatch-part-1-aa.json"
    staging.write_text("maybe a live attempt's")
    assert outputs.remove_leftovers([str(staging)]) == 0
    assert staging.read_text() == "maybe a live attempt's"


def test_a_plain_task_declaring_its_roots_is_refused_over_its_input_too(tmp_path):
    # The check belongs to every task that names its roots, not only to templates.
    data = tmp_path / "text"
    data.mkdir()
    (data / "a.txt").write_text("one two two")
    before = snapshot(tmp_path)
    done = run_dispatch(
        str(REPO / "tasks" / "wordcount.py"),
        "WordCount",
        "--backbone",
        "serial",
        "--mixin",
        f"input={data}",
        f"output={data}",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"dispatch: error: mixin 'output': output root {data} is the input root "
        "(outputs would replace inputs): choose another folder"
    ]
    assert snapshot(tmp_path) == before


# --- an output root that cannot be written is refused before any work -------------------


def _as_nobody() -> list[str]:
    """A non-root user that may still read everything (python under /root, pytest's folders),
    so only the permission to write is taken away."""
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip


@pytest.mark.parametrize("backbone", ["serial", "mp"])
@pytest.mark.parametrize("where", ["root", "parent"])
def test_a_read_only_output_root_is_refused_before_any_work(ds, tmpfs, backbone, where):
    mount = tmpfs("ro", "ro,size=64k")
    out = mount if where == "root" else mount / "not-yet" / "out"
    before = snapshot(ds / "in")
    done = dispatch(ds, "Files", out=out, backbone=backbone)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"dispatch: error: mixin 'output': output root {out} cannot be "
                           f"written (read-only file system at {mount})")  # fmt: skip
    assert not (ds / "logs").exists() and snapshot(ds / "in") == before
    # Outputs already there are still readable: a rerun with nothing to do is no error.
    assert dispatch(ds, "Files", "--plan", out=out).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run as another user")  # fmt: skip
def test_an_output_root_the_user_may_not_write_is_refused_before_any_work(ds):
    out = ds / "theirs"
    out.mkdir(mode=0o755)  # root's folder: nobody may not write in it
    os.chmod(ds, 0o777)  # but may write its log directory beside it
    done = subprocess.run(
        [*_as_nobody(), sys.executable, "-m", "dispatcher", str(TASK), "Files",
         "--backbone", "serial", "--log-dir", str(ds / "logs"),
         "--mixin", f"input={ds / 'in'}", f"output={out}"],
        cwd=ds, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line == (f"dispatch: error: mixin 'output': output root {out} cannot be written "
                    f"(permission denied at {out}): choose a folder you can write")  # fmt: skip
    assert not (ds / "logs").exists() and os.listdir(out) == []


def _two_runs_in_one_process(tmp_path: Path, between) -> tuple[object, Path]:
    """Run the plan tests' Copy twice through `dispatcher.run` in this process, calling
    `between(out)` in between (as a notebook or a service calling the API would)."""
    from conftest import run_task

    data, out = tmp_path / "data", tmp_path / "out"
    (data / "a").mkdir(parents=True)
    (data / "a" / "x.txt").write_text("x")
    mixin = {"input": str(data), "output": str(out)}
    first = run_task(
        task_file("plan_copy"), "Copy", mixin, log_dir=tmp_path / "logs", backbone="serial"
    )
    assert first.exit_code == 0
    between(out)
    return run_task(
        task_file("plan_copy"), "Copy", mixin, log_dir=tmp_path / "logs", backbone="serial"
    ), out


def test_a_second_run_in_one_process_makes_the_output_folders_it_finds_gone(tmp_path):
    second, out = _two_runs_in_one_process(tmp_path, shutil.rmtree)
    assert second.exit_code == 0, second
    assert tree(out) == {"a/x.txt.out": b"x"}


def test_a_second_run_in_one_process_never_writes_through_a_folder_swapped_for_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()

    def swap(out: Path) -> None:
        shutil.rmtree(out / "a")
        (out / "a").symlink_to(outside)

    second, _ = _two_runs_in_one_process(tmp_path, swap)
    assert second.exit_code == 1, second
    assert list(outside.iterdir()) == []


def test_two_runs_in_one_process_keep_a_run_record_each(tmp_path):
    from conftest import run_dirs

    _two_runs_in_one_process(tmp_path, shutil.rmtree)  # the second run has work to do
    assert len(run_dirs(tmp_path / "logs", "Copy")) == 2
