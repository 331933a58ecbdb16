"""kill -9 the whole process tree at many points, rerun, and find exactly the outputs of an
uninterrupted run: byte-identical, with no partial or stray file left in the output root.

Two chains of runs, one per output mode (a file per item on the serial backbone, a folder
per item on the process pool). Each chain is killed repeatedly: by the task itself at
chosen points (before writing, mid-write, after writing but before the commit) and from
outside at random moments while outputs are being staged. After every kill, whatever
is at a final path must equal the reference; a last uninterrupted rerun completes the set.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import task_file

from dispatcher.outputs.records import is_provenance_name

TASK = task_file("outputs_crash")

ITEMS = 20


def make_inputs(root: Path) -> list[str]:
    keys = []
    for i in range(ITEMS):
        rel = f"g{i % 3}/sub{i % 2}/item-{i:02d}.dat"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"input {i}".encode() * (i + 1))
        keys.append(rel)
    return sorted(keys)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root`, hidden ones included: files with bytes, folders as None;
    all but the record of the run that made them (it names that run)."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if not is_provenance_name(p.name)
    }


def is_staging(rel: str) -> bool:
    return any(part.startswith(".") and "dispatch-" in part for part in rel.split("/"))


class Chain:
    def __init__(self, tmp: Path, cls: str, backbone: list[str]) -> None:
        self.tmp, self.cls, self.backbone = tmp, cls, backbone
        self.task = TASK
        self.src = tmp / "in"
        self.out = tmp / f"out-{cls}"
        self.ref = tmp / f"ref-{cls}"
        self.logs = tmp / "logs"

    def command(self, out: Path) -> list[str]:
        return [
            sys.executable, "-m", "dispatcher", str(self.task), self.cls, *self.backbone,
            "--log-dir", str(self.logs), "--mixin", f"input={self.src}", f"output={out}",
        ]  # fmt: skip

    def launch(self, out: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
        full.update(env or {})
        return subprocess.Popen(
            self.command(out),
            env=full,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the whole tree dies together
        )

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        wait_group_gone(proc.pid)
        self.last_stderr = err.decode(errors="replace")
        return proc.returncode

    def done_keys(self, keys: list[str]) -> set[str]:
        marker = ".bin" if self.cls == "Files" else "/manifest.txt"
        return {k for k in keys if (self.out / f"{k}{marker}").exists()}

    def assert_no_lies(self) -> None:
        """Whatever sits at a final path equals the uninterrupted run's bytes."""
        reference = snapshot(self.ref)
        for rel, data in snapshot(self.out).items():
            if is_staging(rel):
                continue
            assert rel in reference, f"stray output {rel}"
            if data is not None:
                assert data == reference[rel], f"{rel} differs from the uninterrupted run"
        if self.cls == "Folders":  # a folder at its final name is always complete
            for rel, data in snapshot(self.out).items():
                if data is not None and not is_staging(rel) and rel.endswith("manifest.txt"):
                    folder = rel.rsplit("/", 1)[0]
                    ours = {
                        r: d for r, d in snapshot(self.out).items() if r.startswith(folder + "/")
                    }
                    theirs = {r: d for r, d in reference.items() if r.startswith(folder + "/")}
                    assert ours == theirs


def wait_group_gone(pgid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)
    raise AssertionError(f"process group {pgid} still alive")


def staging_present(root: Path) -> bool:
    if not root.exists():
        return False
    for _, dirs, files in os.walk(root):
        if any("dispatch-part" in name for name in dirs + files):
            return True
    return False


def run_chain(chain: Chain, keys: list[str], rnd: random.Random) -> list[str]:
    """Kill the chain at 3 chosen and 3 random points; returns the points that killed it."""
    points: list[str] = []
    for point in ("start", "mid", "written"):
        pending = [k for k in keys if k not in chain.done_keys(keys)]
        target = pending[min(2, len(pending) - 1)]
        code = chain.finish(chain.launch(chain.out, {"CRASH_AT": f"{point}:{target}"}))
        assert code == -signal.SIGKILL, chain.last_stderr
        assert target not in chain.done_keys(keys)
        if point in ("mid", "written"):
            assert staging_present(chain.out), "the kill left no staged output behind"
        chain.assert_no_lies()
        points.append(f"{chain.cls}: task killed itself {point} {target}")
    for attempt in range(12):
        if len(points) >= 6:
            break
        proc = chain.launch(chain.out, {"CRASH_DELAY": "0.01"})
        deadline = time.monotonic() + 20
        while (
            proc.poll() is None and not staging_present(chain.out) and time.monotonic() < deadline
        ):
            time.sleep(0.001)
        time.sleep(rnd.uniform(0, 0.05))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        code = chain.finish(proc)
        chain.assert_no_lies()
        if code == -signal.SIGKILL:
            points.append(f"{chain.cls}: killed from outside, attempt {attempt}")
        else:
            assert code == 0, chain.last_stderr
            break  # finished before the kill landed: nothing left to interrupt
    return points


@pytest.mark.slow
def test_kill_minus_nine_anywhere_then_rerun_gives_identical_outputs(tmp_path):
    keys = make_inputs(tmp_path / "in")
    rnd = random.Random(20240607)
    chains = [
        Chain(tmp_path, "Files", ["--backbone", "serial"]),
        Chain(tmp_path, "Folders", ["--backbone", "mp", "--num-process", "2"]),
    ]
    points: list[str] = []
    for chain in chains:
        assert chain.finish(chain.launch(chain.ref)) == 0, chain.last_stderr
        reference = snapshot(chain.ref)
        assert len([r for r, d in reference.items() if d is not None]) >= ITEMS
        assert not any(is_staging(r) for r in reference)
        points += run_chain(chain, keys, rnd)
        # The same command again completes the set.
        assert chain.finish(chain.launch(chain.out)) == 0, chain.last_stderr
        assert snapshot(chain.out) == reference
        # And once more: nothing left to do.
        assert chain.finish(chain.launch(chain.out)) == 0
        assert "nothing to do" in chain.last_stderr
    assert len(points) >= 10, points
    assert not any(p.name.startswith("out") for p in (tmp_path / "logs").rglob("*"))
