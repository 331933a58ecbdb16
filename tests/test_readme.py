"""Every command the README shows works, in order, from a copy of the repository's tasks."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


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


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path):
    shutil.copytree(
        REPO / "tasks", tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__")
    )
    ran = 0
    for command in readme_commands():
        # The installs are what this environment already did; the suite itself is running.
        parts = [p.strip() for p in command.split("&&") if not p.strip().startswith("pip install")]
        command = " && ".join(parts)
        if command.startswith("python -m pytest"):
            continue
        if "sbatch" in command and not _cluster_up():
            continue
        proc = subprocess.run(
            command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        ran += 1
    assert ran >= 10
    if _cluster_up():  # the example array job logs beside the run records, not where it ran
        assert list((tmp_path / "dispatch-logs" / "slurm").glob("wordcount-*_*.out"))
        assert not list(tmp_path.glob("slurm-*.out"))
    assert (tmp_path / "out" / "clips" / "bars.mp4" / "clips.json").is_file()
    clips = sorted(
        p.relative_to(tmp_path / "out" / "clips") for p in (tmp_path / "out" / "clips").rglob("*")
    )
    sharded = sorted(
        p.relative_to(tmp_path / "out" / "sharded")
        for p in (tmp_path / "out" / "sharded").rglob("*")
    )
    assert clips == sharded
