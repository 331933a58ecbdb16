"""Start-up stays light: no torch, pandas or pyarrow unless a code path needs them."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import run_dispatch, write_file

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
    task = write_file(
        tmp_path / "probe.py",
        """
        import json, os, sys
        from dispatcher import Task, atomic_write
        class Probe(Task):
            def generate_tasks(self):
                return [{"i": 0}]
            def process(self, i):
                heavy = sorted(m for m in ("torch", "pandas", "pyarrow", "av") if m in sys.modules)
                with atomic_write(os.path.join(os.path.dirname(__file__), "probe.json")) as tmp:
                    open(tmp, "w").write(json.dumps(heavy))
    """,
    )
    proc = run_dispatch(task, "Probe", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "probe.json").read_text()) == []
