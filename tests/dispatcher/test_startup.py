"""Start-up stays light: no torch, pandas or pyarrow unless a code path needs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import run_dispatch, task_file

HEAVY = ("torch", "pandas", "pyarrow", "av", "numpy")


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dispatcher", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_help_dispatcher_imports_nothing_heavy():
    modules = imported_modules("-hk")
    roots = {m.split(".")[0] for m in modules}
    assert not roots & set(HEAVY), roots & set(HEAVY)
    assert "omegaconf" not in roots and "yaml" not in roots


def test_cpu_task_run_imports_nothing_heavy(tmp_path):
    task = shutil.copy(task_file("runner_probe"), tmp_path / "probe.py")
    proc = run_dispatch(task, "Probe", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "probe.json").read_text()) == []
