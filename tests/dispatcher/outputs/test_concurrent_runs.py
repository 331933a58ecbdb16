"""Concurrent runs over one output root waste work at most, never corrupt it.

Several real `dispatch` processes (serial and mp) run the same task over the same
output root at once, as a double-submitted array or overlapping shards would; some are
killed with SIGKILL (their whole process tree) at random moments. Whatever sits at a final
path must always be a complete, correct output, and one last run completes the set and
leaves no staging, retired or lock name behind.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import task_file

from dispatcher.outputs.records import is_provenance_name

TASK = task_file("outputs_concurrent")

SIZE = 24 * 1024
SUMMARY = re.compile(r"ran (\d+) \((\d+) ok, (\d+) failed\)(?:, (\d+) made by another run)?")


def body(data: bytes, salt: bytes = b"") -> bytes:
    return ((data + salt) * (SIZE // max(1, len(data)) + 1))[:SIZE]


def make_inputs(root: Path, n: int) -> dict[str, bytes]:
    inputs = {}
    for i in range(n):
        rel = f"g{i % 3}/item-{i:02d}.dat"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = f"input {i};".encode() * (i + 1)
        (root / rel).write_bytes(data)
        inputs[rel] = data
    return inputs


def leftovers(out: Path) -> list[str]:
    """The dispatcher's leftovers under `out` (the provenance record is none)."""
    return sorted(
        p.name for p in out.rglob(".*") if "dispatch-" in p.name and not is_provenance_name(p.name)
    )


class Runs:
    def __init__(self, tmp: Path, cls: str, n: int) -> None:
        self.tmp, self.cls = tmp, cls
        self.inputs = make_inputs(tmp / "in", n)
        self.out = tmp / "out"

    def launch(self, backbone: str, *extra: str) -> subprocess.Popen[str]:
        workers = ["--num-process", "2"] if backbone == "mp" else []
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
        return subprocess.Popen(
            [sys.executable, "-m", "dispatcher", str(TASK), self.cls,
             "--backbone", backbone, *workers, "--log-dir", str(self.tmp / "logs"),
             "--mixin", f"input={self.tmp / 'in'}", f"output={self.out}", *extra],
            cwd=self.tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group: a kill takes its workers too
        )  # fmt: skip

    def expected(self, rel: str) -> dict[str, bytes]:
        data = self.inputs[rel]
        if self.cls == "Files":
            return {f"{rel}.bin": body(data)}
        return {
            f"{rel}/part-0.bin": body(data, b"\x00"),
            f"{rel}/part-1.bin": body(data, b"\x01"),
            f"{rel}/manifest.txt": b"part-0.bin part-1.bin",
        }

    def check_final_paths(self) -> int:
        """Every output at a final path is complete and correct; returns how many items are."""
        complete = 0
        for rel in self.inputs:
            want = self.expected(rel)
            final = self.out / (f"{rel}.bin" if self.cls == "Files" else rel)
            if not final.exists():
                continue
            got = {
                p.relative_to(self.out).as_posix(): p.read_bytes()
                for p in ([final] if final.is_file() else final.rglob("*"))
                if p.is_file()
            }
            assert got == want, f"{rel}: a final path holds an incomplete or foreign output"
            complete += 1
        return complete


def finished(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("cls", ["Files", "Folders"])
def test_two_concurrent_runs_make_every_item_once_and_say_so(tmp_path, cls):
    runs = Runs(tmp_path, cls, 24)
    procs = [runs.launch("serial"), runs.launch("mp")]
    results = [finished(p) for p in procs]
    made = 0
    for code, err in results:
        assert code == 0, err
        ran, ok, failed, elsewhere = (int(g or 0) for g in SUMMARY.search(err).groups())
        assert failed == 0 and ran == ok
        made += ok
    assert made == 24  # each item made by exactly one run; the other counts it as made elsewhere
    assert runs.check_final_paths() == 24
    assert leftovers(runs.out) == []


@pytest.mark.slow
@pytest.mark.parametrize("cls", ["Files", "Folders"])
def test_concurrent_runs_killed_at_random_leave_only_valid_outputs(tmp_path, cls):
    rng = random.Random(f"stress-{cls}")
    runs = Runs(tmp_path, cls, 30)
    killed = 0
    for _ in range(2):
        procs = [runs.launch(rng.choice(["serial", "mp"])) for _ in range(rng.randint(2, 4))]
        doomed = rng.sample(procs, rng.randint(1, len(procs) - 1))
        began = time.monotonic()
        for proc in doomed:
            # At a random moment once the runs are at work (something is under the root).
            while time.monotonic() - began < 60 and not any(runs.out.rglob("*")):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 1.2))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed += 1
            runs.check_final_paths()
        for proc in procs:
            code, err = finished(proc)
            if proc in doomed:
                assert code in (0, -signal.SIGKILL), err
            else:
                assert code == 0 and ("— success" in err or "nothing to do" in err), err
        runs.check_final_paths()
    assert killed  # the runs were still at work when killed
    final = runs.launch("serial")
    code, err = finished(final)
    assert code == 0, err
    assert runs.check_final_paths() == 30
    assert leftovers(runs.out) == []
    plan = runs.launch("serial", "--plan")
    out, _ = plan.communicate(timeout=60)
    assert plan.returncode == 0 and "to run:         0" in out and "leftovers" not in out, out
