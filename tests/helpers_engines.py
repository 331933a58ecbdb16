"""Helpers the engine tests share beyond conftest's: the stand-in torch_npu, a run in a
process group of its own, what the probe task (tests/tasks/mp_probe.py) left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import TASKS

NPU_STAND_IN = TASKS / "torch_npu_stand_in"
"""A folder holding a `torch_npu` package that registers a fake `npu` device."""


def npu_stand_in_env(log: Path, count: int | None = None) -> dict[str, str]:
    """Environment for a `dispatch` process that imports the stand-in torch_npu: it logs each
    `set_device` call to `log` and reports `count` devices (1 unless given)."""
    env = {
        "PYTHONPATH": os.pathsep.join([str(NPU_STAND_IN), os.environ.get("PYTHONPATH", "")]),
        "FAKE_NPU_LOG": str(log),
    }
    if count is not None:
        env["FAKE_NPU_COUNT"] = str(count)
    return env


def start_dispatch_in_own_group(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    """`python -m dispatcher ARGS` started in a session (and process group) of its own, so a
    test signals the whole group as SLURM and a terminal's Ctrl-C do (`os.killpg`)."""
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def probe_outputs(out: Path) -> dict[str, str]:
    """The probe's committed outputs (name -> text), without staging or its marks."""
    if not out.exists():
        return {}
    return {
        p.name: p.read_text() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")
    }


def probe_leftovers(out: Path) -> list[str]:
    """Staging the probe's items left behind."""
    return [p.name for p in out.rglob(".*") if "dispatch-part" in p.name] if out.exists() else []


def probe_workers(out: Path) -> dict[str, str]:
    """Each worker's (or actor's) setup and teardown marks, by process id: "st" for both."""
    folder = out / "_workers"
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.exists() else {}


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
