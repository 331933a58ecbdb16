"""Every command the README shows works, in order, from a copy of the repository's tasks.

A ```bash block runs line by line, each line exiting 0. A command that cannot run as
written says how it is meant in its fence's info string, and runs that way here:

- ```bash ctrl-c: a run to stop; it is started, SIGINT is sent once its items run, and it
  must say it is stopping and exit 130.
- ```bash server: a block that starts a server in the background, then uses it. It is
  not run here: tests/dispatcher/storage/test_object_roots.py runs its other lines against
  the session's S3 server (what its first lines start and export) and checks the store.

Other fences (```text, ```python, ```sh) are not commands to run here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest
from conftest import REPO

FENCE = re.compile(r"```bash(?: ([\w-]+))?\n(.*?)```", flags=re.S)
HOW = (None, "ctrl-c", "server")


def readme_blocks() -> list[tuple[str | None, str]]:
    """(how it runs, its text) of each ```bash block, in order."""
    text = (REPO / "README.md").read_text()
    return [(how or None, block) for how, block in FENCE.findall(text)]


def readme_commands() -> list[str]:
    """The commands of the plain ```bash blocks, one per line."""
    commands = []
    for how, block in readme_blocks():
        if how is None:
            commands += _lines(block)
    return commands


def _lines(block: str) -> list[str]:
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_exactly_two_setup_commands():
    text = (REPO / "README.md").read_text()
    head = text.split("## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", head, flags=re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert "dispatch tasks/" in blocks[0] and "pytest" in blocks[1]


def _cluster_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=20).returncode == 0


def _run_line(command: str, cwd) -> bool:
    """One line of a plain block; False when this machine cannot run it (no cluster)."""
    # The installs are what this environment already did; the suite itself is running.
    parts = [p.strip() for p in command.split("&&") if not p.strip().startswith("pip install")]
    command = " && ".join(parts)
    if command.startswith("python -m pytest"):
        return False
    if "sbatch" in command and not _cluster_up():
        return False
    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    return True


def _run_interrupted(command: str, cwd) -> None:
    """A ```bash ctrl-c line: SIGINT once its items are running, as a user's Ctrl-C."""
    logs = list(cwd.glob("dispatch-logs/*/*/run.json"))
    # No shell between: a shell that sees SIGINT kills itself with it (exit -2, not 130).
    proc = subprocess.Popen(
        shlex.split(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(list(cwd.glob("dispatch-logs/*/*/run.json"))) == len(logs):
        assert proc.poll() is None and time.monotonic() < deadline, f"{command} did not start"
        time.sleep(0.1)
    time.sleep(1.0)  # the first items are in flight
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"{command}\n{out}\n{err}"
    assert "dispatch: stopping (SIGINT)" in err, err


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path):
    shutil.copytree(
        REPO / "tasks", tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__")
    )
    ran = 0
    for how, block in readme_blocks():
        assert how in HOW, f"unknown README fence: bash {how}"
        if how == "server":
            continue  # run by test_object_roots.py, against the session's S3 server
        for command in _lines(block):
            if how == "ctrl-c":
                _run_interrupted(command, tmp_path)
                ran += 1
            elif _run_line(command, tmp_path):
                ran += 1
    assert ran >= 10
    if _cluster_up():  # the example array job logs beside the run records, not where it ran
        assert list((tmp_path / "dispatch-logs" / "slurm").glob("wordcount-*_*.out"))
        assert not list(tmp_path.glob("slurm-*.out"))
    assert (tmp_path / "out" / "clips" / "bars.mp4" / "clips.json").is_file()
    # The stopped run made nothing; the command after it made every file.
    assert len(list((tmp_path / "out" / "stopped").rglob("*.json"))) == 3
    assert '<tr class="shard"' in (tmp_path / "out" / "status.html").read_text()
    clips = sorted(
        p.relative_to(tmp_path / "out" / "clips") for p in (tmp_path / "out" / "clips").rglob("*")
    )
    sharded = sorted(
        p.relative_to(tmp_path / "out" / "sharded")
        for p in (tmp_path / "out" / "sharded").rglob("*")
    )
    assert clips == sharded
