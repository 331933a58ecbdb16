"""Progress off a terminal (a SLURM log): timestamped lines with done/total, rate, ETA and
failures every `--progress-interval` seconds; a 0-column pseudo-terminal gets lines too."""

from __future__ import annotations

import re

from conftest import run_dispatch, run_in_terminal, task_file

LINE = re.compile(
    r"dispatch: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\d+)/30 items \([0-9.]+%\), 0 failed, "
    r"[0-9.]+ items/s, eta \S+"
)


def _slow(tmp_path, *extra: str) -> list[str]:
    return [str(task_file("signals_slow")), "Slow", "--backbone", "serial", "--log-dir",
            str(tmp_path / "logs"), *extra, "--mixin", f"out={tmp_path / 'out'}", "n=30",
            "sleep=0.05"]  # fmt: skip


def test_a_log_file_gets_a_timestamped_line_every_interval(tmp_path):
    done = run_dispatch(*_slow(tmp_path, "--progress-interval", "0.3"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if LINE.fullmatch(line)]
    assert 2 <= len(lines) <= 10, done.stderr  # about 1.5 s of work, a line every 0.3 s
    assert "\r" not in done.stderr
    quiet = run_dispatch(*_slow(tmp_path, "--force"))
    assert not [line for line in quiet.stderr.splitlines() if LINE.fullmatch(line)]  # 60 s
    wrong = run_dispatch(*_slow(tmp_path, "--progress-interval", "0"))
    assert (
        wrong.returncode == 2 and "--progress-interval expects a number of seconds" in wrong.stderr
    )


def test_a_zero_column_pseudo_terminal_gets_lines_not_a_bar(tmp_path):
    code, text = run_in_terminal(*_slow(tmp_path, "--progress-interval", "0.3"), columns=0)
    assert code == 0, text
    lines = [line.strip() for line in text.splitlines() if LINE.fullmatch(line.strip())]
    assert lines and "it/s" not in text and "item/s]" not in text  # no tqdm bar
