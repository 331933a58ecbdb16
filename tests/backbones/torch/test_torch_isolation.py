"""A DataLoader worker that dies on one item fails that item only, on every run.

The batch that took its worker down is reloaded item by item in fresh workers, so its
batch-mates finish and a rerun has only the culprit left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_dispatch, task_file

pytest.importorskip("torch")


def run(task: Path, out: Path, *mixin: str):
    return run_dispatch(task, "Killer", "--backbone", "torch", "--device", "cpu",
                        "--batch-size", "4", "--num-workers", "2", "--mixin", f"out={out}",
                        *mixin, cwd=out.parent, timeout=240)  # fmt: skip


def all_failures(root: Path) -> list[dict]:
    """Every run's failures, oldest run first (conftest's `failures` reads the newest)."""
    rows = []
    for path in sorted((root / "dispatch-logs").rglob("failures.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_only_the_item_that_kills_its_worker_fails_and_a_rerun_runs_only_it(tmp_path):
    task = task_file("torch_killer")
    out = tmp_path / "out"
    proc = run(task, out)
    assert proc.returncode == 1, proc.stderr
    assert "ran 16 (15 ok, 1 failed)" in proc.stderr, proc.stderr
    done = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(done) == {f"i{i:03d}" for i in range(16)} - {"i005"}
    assert all(v["y"] == 2.0 * int(k[1:]) for k, v in done.items())
    rows = all_failures(tmp_path)
    assert [row["key"] for row in rows] == ["i005"]
    assert "exited unexpectedly" in rows[0]["error"]

    rerun = run(task, out)
    assert rerun.returncode == 1, rerun.stderr
    assert "skipped 15, ran 1 (0 ok, 1 failed)" in rerun.stderr, rerun.stderr
    assert [row["key"] for row in all_failures(tmp_path)] == ["i005", "i005"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_culprits_in_one_batch_fail_alone(tmp_path):
    task = task_file("torch_killer")
    out = tmp_path / "out"
    proc = run(task, out, "n=12", "kill=i004,i007")
    assert proc.returncode == 1, proc.stderr
    assert "ran 12 (10 ok, 2 failed)" in proc.stderr, proc.stderr
    assert {p.stem for p in out.glob("*.json")} == {f"i{i:03d}" for i in range(12)} - {
        "i004",
        "i007",
    }
    assert sorted(row["key"] for row in all_failures(tmp_path)) == ["i004", "i007"]
