"""The layers hold: the core imports no engine or template, and no module cycles exist.

`lint-imports` checks the contracts in pyproject.toml. The copies below break each
contract on purpose, so a contract that stopped biting would be noticed too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGES = ("dispatcher", "backbones", "templates")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the packages under `root`, with `root`'s pyproject.toml."""
    executable = shutil.which("lint-imports")
    if executable is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]' installs it)")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [executable, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def copy_packages(dest: Path) -> Path:
    """The three packages and pyproject.toml, ready for one deliberate violation."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_every_import_contract_is_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("Layers", "Forbidden", "Acyclic"):
        assert name in proc.stdout, proc.stdout
    assert "0 broken" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The core reaching into an engine: the layers and the forbidden contract both break.
        ("dispatcher/plan.py", "import backbones.serial\n", ("Layers", "Forbidden")),
        (
            "dispatcher/outputs/__init__.py",
            "from templates import cpu_task\n",
            ("Layers", "Forbidden"),
        ),
        # A lazy import is an import too: the plan importing the runner closes a cycle.
        (
            "dispatcher/plan.py",
            "def _late():\n    import dispatcher.runner.execute\n",
            ("Acyclic",),
        ),
        ("backbones/base.py", "def _late():\n    import backbones.mp.pool\n", ("Acyclic",)),
        # An engine reaching past the seam into a core module.
        ("backbones/serial.py", "from dispatcher.stage import Stage\n", ("Seam",)),
    ],
)
def test_a_violation_breaks_its_contract(tmp_path, module, line, broken):
    root = copy_packages(tmp_path)
    append(root / module, "\n\n" + line)
    proc = lint_imports(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in broken:
        assert any(name in row and "BROKEN" in row for row in proc.stdout.splitlines()), proc.stdout


def test_core_names_engines_without_importing_them():
    """Resolving an engine imports it; importing the core and its seam imports none."""
    code = (
        "import sys\n"
        "import dispatcher.engines, dispatcher.runner.execute, dispatcher.loader\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in ('backbones', 'templates'))\n"
        "from dispatcher.task import Task\n"
        "cls = dispatcher.engines.resolve('serial', Task)\n"
        "from backbones import Backbone\n"
        "print(before, cls.__module__, issubclass(cls, Backbone))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "backbones.serial", "True"], proc.stdout


def test_a_loaded_task_pickles_into_a_fresh_interpreter(tmp_path):
    """The loader, not the task contract, says how a loaded task is rebuilt in a worker."""
    task_file = tmp_path / "probe_task.py"
    task_file.write_text(
        "from dispatcher import Task\n"
        "class Probe(Task):\n"
        "    def generate_tasks(self):\n"
        "        return []\n"
    )
    dump = (
        "import pickle, sys\n"
        "from dispatcher.loader import load_task_class\n"
        "task = load_task_class(sys.argv[1], 'Probe')()\n"
        "task.marker = 7\n"
        "sys.stdout.buffer.write(pickle.dumps(task))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    dumped = subprocess.run(
        [sys.executable, "-c", dump, str(task_file)], capture_output=True, timeout=120, env=env
    )
    assert dumped.returncode == 0, dumped.stderr
    load = (
        "import pickle, sys\n"
        "task = pickle.loads(sys.stdin.buffer.read())\n"
        "print(type(task).__name__, task.marker, type(task).__dispatch_source__[1])\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", load],
        input=dumped.stdout,
        capture_output=True,
        timeout=120,
        env=env,
        cwd=tmp_path.parent,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.decode().split() == ["Probe", "7", "Probe"]
