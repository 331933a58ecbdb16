"""The task's logger (`dispatcher.get_logger()`) and its `print()`: whole lines beside the
progress bar, from mp workers too, and the logger's lines in `task.log` beside run.json."""

from __future__ import annotations

import re

from conftest import run_dir, run_dispatch, run_in_terminal, run_record, task_file

TASK = task_file("report_printing")


def test_a_workers_lines_never_glue_onto_the_bar_and_the_log_is_kept(tmp_path):
    code, text = run_in_terminal(TASK, "Printing", "--backbone", "mp", "--log-dir",
                                 tmp_path / "logs", columns=100, stdout=True)  # fmt: skip
    assert code == 0, text
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
    parent = run_record(tmp_path / "logs", "Printing")["pid"]
    assert all(int(pid) != parent for pid, _ in logged)  # written by the workers themselves


def test_spawned_workers_write_the_task_log_too(tmp_path):
    done = run_dispatch(TASK, "Printing", "--backbone", "mp", "--start-method", "spawn",
                        "--num-process", "2", "--log-dir", tmp_path / "logs")  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = (run_dir(tmp_path / "logs", "Printing") / "task.log").read_text()
    assert sorted(re.findall(r" INFO \[\d+\] logged (\d)$", log, flags=re.M)) == list("01234567")


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
