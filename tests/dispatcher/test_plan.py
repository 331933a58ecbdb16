"""The command line over the data plane: --plan, --force, --shard, staging cleanup,
checks that create nothing, and output roots that hold outputs only.

Every test runs the real `dispatch` command in a subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import dispatch_here, task_file

from dispatcher.outputs.records import is_provenance_name

TASK = task_file("plan_copy")

NAMES = [f"{d}/{i:02d}.txt" for d in ("a", "b/c", "d") for i in range(4)]


@pytest.fixture
def ds(tmp_path):
    for name in NAMES:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return tmp_path


def dispatch(ds: Path, cls: str, *args: str, env: dict[str, str] | None = None, logs=True):
    """The serial run of `cls` over `ds/in`, in this process."""
    extra = ["--log-dir", str(ds / "logs")] if logs else []
    return dispatch_here(
        TASK, cls, "--backbone", "serial", *extra,
        "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}", *args, cwd=ds, env=env,
    )  # fmt: skip


def everything(root: Path) -> dict[str, str | None]:
    """Every entry under `root`, hidden ones included (folders as None), but the record of
    the run that made them (tests/dispatcher/outputs/test_records.py checks it)."""
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_text())
        for p in sorted(root.rglob("*"))
        if not is_provenance_name(p.name)
    }


def plan_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        label, _, rest = line.partition(":")
        counts[label.strip()] = int(rest.split()[0])
    return counts


def test_plan_prints_counts_runs_nothing_and_writes_nothing(ds):
    for name in NAMES[:5]:
        out = ds / "out" / f"{name}.out"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("done")
    (ds / "out" / "b" / "c" / ".08.txt.dispatch-part.out").write_text("stale")
    before = everything(ds)
    done = dispatch(ds, "Copy", "--plan")
    assert done.returncode == 0, done.stderr
    assert plan_counts(done.stdout) == {
        "items found": 12, "in this shard": 12, "already done": 5, "to run": 7,
        "leftovers": 1,
    }  # fmt: skip
    assert "(all)" in done.stdout
    assert everything(ds) == before  # no output, no folder, no log, no staging cleanup

    sharded = dispatch(ds, "Half", "--plan", "--shard", "1/3", "--force")
    assert sharded.returncode == 0
    counts = plan_counts(sharded.stdout)
    assert counts["items found"] == 12 and counts["in this shard"] <= 6
    assert "(index 0/2 > hash 1/3)" in sharded.stdout and "ignored: --force" in sharded.stdout
    assert everything(ds) == before


def test_plan_on_a_missing_output_root_creates_nothing(ds):
    before = everything(ds)
    done = dispatch(ds, "Folder", "--plan")
    assert done.returncode == 0 and plan_counts(done.stdout)["to run"] == 12
    assert everything(ds) == before and not (ds / "out").exists()


def test_rerun_skips_done_items_and_creates_no_folders(ds):
    assert dispatch(ds, "Copy").returncode == 0
    (ds / "out" / "d" / "01.txt.out").unlink()
    (ds / "out" / "a" / "00.txt.out").unlink()
    for folder in ("a",):  # a done tree may lack folders it never needed
        for p in (ds / "out" / folder).iterdir():
            p.unlink()
        (ds / "out" / folder).rmdir()
    dispatch(ds, "Copy", env={"MARK": "!"})
    out = everything(ds / "out")
    assert out["d/01.txt.out"] == "d/01.txt!" and out["a/00.txt.out"] == "a/00.txt!"
    assert out["d/00.txt.out"] == "d/00.txt"  # skipped, not rewritten
    before = everything(ds)
    again = dispatch(ds, "Copy")
    assert again.returncode == 0 and "nothing to do: 12 items in this shard" in again.stderr
    assert everything(ds) == before  # checking created nothing, not even a log


def test_force_reprocesses_done_items(ds):
    assert dispatch(ds, "Copy").returncode == 0
    forced = dispatch(ds, "Copy", "--force", env={"MARK": "+"})
    assert forced.returncode == 0
    assert "ran 12 (12 ok" in forced.stderr
    assert all(v is None or v.endswith("+") for v in everything(ds / "out").values())
    folder = dispatch(ds, "Folder")
    assert folder.returncode == 0
    refolder = dispatch(ds, "Folder", "--force")
    assert refolder.returncode == 0 and "ran 12" in refolder.stderr


@pytest.mark.parametrize("mode", ["hash", "index"])
def test_cli_shards_together_make_exactly_one_unsharded_run(ds, mode):
    ran = 0
    for i in range(3):
        done = dispatch(ds, "Copy", "--shard", f"{i}/3", "--shard-mode", mode)
        assert done.returncode == 0, done.stderr
        ran += int(done.stderr.split(" ran ")[1].split()[0]) if " ran " in done.stderr else 0
    assert ran == len(NAMES)
    assert everything(ds / "out") == {
        **{f"{n}.out": n for n in NAMES},
        **{d: None for d in ("a", "b", "b/c", "d")},
    }


def test_auto_shard_from_a_slurm_array_with_ids_from_five(ds):
    produced = []
    for task_id in (5, 6):
        env = {
            "SLURM_ARRAY_TASK_ID": str(task_id),
            "SLURM_ARRAY_TASK_COUNT": "2",
            "SLURM_ARRAY_TASK_MIN": "5",
            "SLURM_ARRAY_TASK_MAX": "6",
        }
        before = set(everything(ds / "out")) if (ds / "out").exists() else set()
        done = dispatch(ds, "Copy", "--shard", "auto", env=env)
        assert done.returncode == 0, done.stderr
        produced.append({p for p in everything(ds / "out") if p.endswith(".out")} - before)
    assert produced[0] and produced[1] and not produced[0] & produced[1]
    assert produced[0] | produced[1] == {f"{n}.out" for n in NAMES}


def test_template_shard_then_cli_shard(ds):
    halves = []
    for half in (0, 1):
        for i in range(2):
            done = dispatch(ds, "Half", "--shard", f"{i}/2", "--mixin", f"shard.shard_idx={half}")
            assert done.returncode == 0, done.stderr
        halves.append({p for p in everything(ds / "out") if p.endswith(".out")})
    # The template's first half alone is every second item in key order.
    assert halves[0] == {f"{n}.out" for n in sorted(NAMES)[0::2]}
    assert halves[1] == {f"{n}.out" for n in NAMES}


def test_stale_staging_leftovers_are_removed_when_their_item_runs(ds):
    out = ds / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / ".00.txt.dispatch-part.out").write_text("half-writ")
    (out / "a" / "01.txt.out").write_text("a/01.txt")  # done
    assert dispatch(ds, "Copy").returncode == 0
    files = everything(out)
    assert ".00.txt.dispatch-part.out" not in {Path(p).name for p in files}
    assert files["a/00.txt.out"] == "a/00.txt"

    folder = ds / "fout"
    (folder / "a" / ".00.dispatch-part.txt").mkdir(parents=True)  # staging of a/00.txt/
    (folder / "a" / ".00.dispatch-part.txt" / "partial").write_text("x")
    (folder / "a" / ".01.dispatch-old.txt").mkdir()  # left by a --force killed mid-swap
    done = dispatch_here(
        TASK, "Folder", "--backbone", "serial", "--log-dir", ds / "logs",
        "--mixin", f"input={ds / 'in'}", f"output={folder}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p for p in everything(folder) if "dispatch-" in p] == []
    assert everything(folder)["a/00.txt/m.txt"] == "a/00.txt"


def test_logs_never_land_in_the_output_root(ds):
    done = dispatch(ds, "Copy", logs=False)
    assert done.returncode == 0, done.stderr
    assert sorted(
        p for p in everything(ds / "out") if everything(ds / "out")[p] is not None
    ) == sorted(f"{n}.out" for n in NAMES)
    # Besides the outputs, only the hidden record of what made them.
    assert [p.name for p in (ds / "out").iterdir() if p.name[0] == "."] == [".dispatch-run.Copy"]
    assert (ds / "dispatch-logs").is_dir()  # the default: under the working directory
    assert any((ds / "dispatch-logs").rglob("run.json"))
    assert not any("run" in p or "failures" in p for p in everything(ds / "out"))


def test_failed_items_are_retried_on_the_next_run(ds):
    first = dispatch(ds, "Flaky", env={"FAIL": "1"})
    assert first.returncode == 1 and "4 failed" in first.stderr
    assert not any("b/c" in p and p.endswith(".out") for p in everything(ds / "out"))
    second = dispatch(ds, "Flaky")
    assert second.returncode == 0 and "skipped 8, ran 4" in second.stderr
    assert sorted(os.listdir(ds / "out" / "b" / "c")) == [f"{i:02d}.txt.out" for i in range(4)]


def test_limit_runs_the_first_pending_items_in_plan_order_and_says_so(ds):
    (ds / "out" / "a").mkdir(parents=True)
    (ds / "out" / "a" / "00.txt.out").write_text("done")
    plan = dispatch(ds, "Copy", "--plan", "--limit", "3")
    assert plan.returncode == 0
    assert plan_counts(plan.stdout)["to run"] == 3 and "the first of 11" in plan.stdout
    trial = dispatch(ds, "Copy", "--limit", "3")
    assert trial.returncode == 0, trial.stderr
    made = sorted(p for p, text in everything(ds / "out").items() if text and p != "a/00.txt.out")
    assert made == [f"{name}.out" for name in sorted(NAMES)[1:4]]  # real outputs, in key order
    assert "ran 3 (3 ok, 0 failed)" in trial.stderr
    assert "a trial run: --limit 3 ran the first 3 of 11 pending items" in trial.stderr
    assert "run without --limit for the other 8" in trial.stderr
    import json

    record = json.loads(next((ds / "logs").rglob("run.json")).read_text())
    assert record["limited"] == {"limit": 3, "pending": 11} and record["counts"]["to_run"] == 3
    rest = dispatch(ds, "Copy")
    assert "ran 8 (8 ok" in rest.stderr and "trial run" not in rest.stderr
    for wrong in ("0", "-1", "x"):
        refused = dispatch(ds, "Copy", f"--limit={wrong}")
        assert refused.returncode == 2 and "--limit expects a number of items" in refused.stderr
