"""The task's logger (`dispatcher.get_logger()`) and its `print()`: whole lines beside the
progress bar, from mp workers too, and the logger's lines in `task.log` beside run.json."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from conftest import run_dir, run_dispatch, task_file

TASK = task_file("report_printing")


def test_a_workers_lines_never_glue_onto_the_bar_and_the_log_is_kept(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SLURM_ARRAY_TASK_ID")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", str(TASK), "Printing", "--backbone", "mp",
         "--log-dir", str(tmp_path / "logs")],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode()
    assert proc.returncode == 0, text
    assert "item/s" in text or "it/s" in text  # a bar was drawn
    for i in range(8):
        for what in ("printed", "logged"):
            # a whole line of its own: begun after a line end or the bar's carriage return
            assert re.search(rf"(^|[\r\n])(\x1b\[[0-9;]*[A-Za-z])*{what} {i}\r?\n", text), (
                what,
                i,
                text,
            )
    log = (run_dir(tmp_path / "logs", "Printing") / "task.log").read_text()
    logged = re.findall(r"^\S+ \S+ INFO \[(\d+)\] logged (\d)$", log, flags=re.M)
    assert sorted(int(i) for _, i in logged) == list(range(8))
    assert all(int(pid) != proc.pid for pid, _ in logged)  # written by the workers


def test_serial_task_lines_go_to_stderr_and_the_log(tmp_path):
    done = run_dispatch(TASK, "Printing", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                        "--mixin", "n=3", "sleep=0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("logged")] == [
        "logged 0", "logged 1", "logged 2",
    ]  # fmt: skip
    assert "printed 0" in done.stdout
    log = (run_dir(tmp_path / "logs", "Printing") / "task.log").read_text()
    assert log.count(" INFO ") == 3
