"""Failures grouped in the summary: one line per kind of failure (numbers, paths and quoted
values masked), with how many items it failed and the first of them by key; a run whose
every item failed says so."""

from __future__ import annotations

from conftest import dispatch_here, write_file

from dispatcher.report.failure_groups import FailureGroups, kind_of


def test_a_kind_masks_what_varies_from_item_to_item():
    assert kind_of("ValueError: no frame 12 in '/d/a.mp4'") == "ValueError: no frame <N> in <Q>"
    assert kind_of("OSError: [Errno 2] No such file: /data/x/y.mp4") == (
        "OSError: [Errno <N>] No such file: <PATH>"
    )
    assert kind_of('KeyError: "text"') == "KeyError: <Q>"
    assert kind_of("RuntimeError: boom (failed 3 attempts)") == (
        "RuntimeError: boom (failed <N> attempts)"
    )
    assert kind_of("ZeroDivisionError: division by zero") == "ZeroDivisionError: division by zero"


def test_groups_count_items_name_the_first_key_and_the_most_frequent_first():
    groups = FailureGroups()
    for i in reversed(range(40)):
        groups.add(f"{i:03d}.txt", f"ValueError: bad value {i} in data/{i}.txt")
    groups.add("b.txt", "KeyError: 'x'")
    groups.add("a.txt", "KeyError: 'y'")
    for i in range(6):
        groups.add(f"z{i}", f"E{i}: distinct")
    lines = groups.lines(3)
    assert lines[0] == (
        "failed 000.txt: ValueError: bad value 0 in data/0.txt "
        "(and 39 more like it: ValueError: bad value <N> in <PATH>)"
    )
    assert lines[1] == "failed a.txt: KeyError: 'y' (and 1 more like it: KeyError: <Q>)"
    assert lines[2] == "failed z0: E0: distinct"
    assert lines[3] == "... and 5 more kinds of failure (5 items)"
    assert groups.count == 48


TASK = """
from dispatcher import Placeholder, Task


class Fails(Task):
    mixin = {"n": Placeholder(int, default=30), "ok": Placeholder(int, default=-1)}

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:03d}"

    def process(self, i):
        if i == self.mixin.ok:
            return
        if i % 10 == 9:
            raise KeyError(f"field {i}")
        raise ValueError(f"cannot read /data/{i}.bin at byte {i * 7}")
"""


def test_the_summary_groups_failures_and_says_when_every_item_failed(tmp_path):
    task = write_file(tmp_path / "fails.py", TASK)
    done = dispatch_here(task, "Fails", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--keep-going")  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("dispatch: failed ")]
    assert lines == [
        "dispatch: failed 000: ValueError: cannot read /data/0.bin at byte 0 "
        "(and 26 more like it: ValueError: cannot read <PATH> at byte <N>)",
        "dispatch: failed 009: KeyError: 'field 9' (and 2 more like it: KeyError: <Q>)",
    ]
    assert "ran 30 (0 ok, 30 failed)" in done.stderr and "— every item failed" in done.stderr
    assert "failures listed in " in done.stderr
    some = dispatch_here(task, "Fails", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", "ok=3")  # fmt: skip
    assert "— some items failed" in some.stderr


def test_a_run_whose_first_items_all_fail_stops_unless_it_keeps_going(tmp_path):
    task = write_file(tmp_path / "fails.py", TASK)
    for backbone in ("serial", "mp"):
        done = dispatch_here(task, "Fails", "--backbone", backbone, "--log-dir", tmp_path / "logs",
                             "--mixin", "n=200")  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "stopped: the first 20 items to finish all failed" in done.stderr
        assert "--keep-going runs every item anyway" in done.stderr
        ran = int(done.stderr.split(" ran ")[1].split()[0])
        assert 20 <= ran < 200, done.stderr  # in-flight items finish; no new ones start
    kept = dispatch_here(task, "Fails", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", "n=200", "--keep-going")  # fmt: skip
    assert "ran 200 (0 ok, 200 failed)" in kept.stderr and "every item failed" in kept.stderr


def test_max_failures_stops_after_that_many_failed_items(tmp_path):
    task = write_file(tmp_path / "fails.py", TASK)
    done = dispatch_here(task, "Fails", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--max-failures", "3", "--mixin", "ok=1")  # fmt: skip
    assert done.returncode == 1
    assert "ran 4 (1 ok, 3 failed), not run 26" in done.stderr
    assert "aborted: stopped: --max-failures 3: 3 items failed" in done.stderr
    for wrong in ("0", "x"):
        refused = dispatch_here(task, "Fails", f"--max-failures={wrong}")
        assert (
            refused.returncode == 2 and "--max-failures expects a number of items" in refused.stderr
        )
