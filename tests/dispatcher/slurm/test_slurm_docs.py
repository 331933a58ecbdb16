"""docs/slurm.md: the script it shows is what `dispatch submit --dry-run` prints, and every
`dispatch` command it shows runs, in order, on a real cluster (skipped without one)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, run_dispatch
from test_slurm_submit import clean_env, needs_cluster, wait_for

DOC = REPO / "docs" / "slurm.md"


def doc_commands() -> list[str]:
    """The `dispatch ...` lines of the doc's bash blocks, in order."""
    text = DOC.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += [line.strip() for line in block.splitlines() if line.startswith("dispatch ")]
    return lines


def _copy_tasks(tmp_path):
    shutil.copytree(
        REPO / "tasks", tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__")
    )


def test_the_shown_script_is_what_a_dry_run_prints(tmp_path):
    _copy_tasks(tmp_path)
    (dry,) = [c for c in doc_commands() if "--dry-run" in c]
    done = run_dispatch(*shlex.split(dry)[1:], cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines() if not line.startswith("# sbatch")]
    shown = DOC.read_text().split("prints the script (paths are absolute in it):\n\n```\n", 1)[1]
    shown = shown.split("```", 1)[0].splitlines()
    # The doc's example paths stand for this machine's, its manifest's time for now.
    printed = [
        re.sub(r"-\d{8}-\d{6}-\d+\.manifest", "-20261201-093000-4242.manifest", line)
        .replace(str(tmp_path), "/home/me/repo")
        .replace(sys.executable, "/usr/bin/python3")
        for line in printed
    ]
    assert printed == shown


def test_submit_and_status_help():
    done = run_dispatch("submit", "-h")
    assert done.returncode == 0 and "--array N" in done.stdout and "--requeue" in done.stdout
    done = run_dispatch("status", "--help")
    assert done.returncode == 0 and "--json" in done.stdout


@pytest.mark.slow
@needs_cluster
def test_every_dispatch_command_of_the_doc_runs(tmp_path):
    _copy_tasks(tmp_path)
    commands = doc_commands()
    assert len(commands) >= 5
    jobs: list[str] = []
    try:
        for command in commands:
            done = run_dispatch(*shlex.split(command)[1:], cwd=tmp_path, env=clean_env())
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            jobs += re.findall(r"^submitted job (\d+):", done.stdout, re.M)
        wait_for(jobs)
        counts = sorted(p.name for p in (tmp_path / "out" / "wordcount").rglob("*.json"))
        assert counts == ["fox.txt.json", "hamlet.txt.json", "shards.txt.json"]
        status = run_dispatch(*shlex.split(commands[1])[1:], cwd=tmp_path, env=clean_env())
        assert status.returncode == 0 and status.stdout.splitlines()[-1].split()[-1] == "0"
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True, timeout=30)
