"""The per-item path (claim, done re-check, staging, commit) and its cheap parts: staging
names without a system call, confinement without splitting, counts per chunk."""

from __future__ import annotations

import os
import platform
import re
import sys

import pytest
from conftest import task_file

from dispatcher import outputs
from dispatcher.cli import parse_command_line
from dispatcher.execution.steps import Outcome
from dispatcher.outputs import DoneElsewhere, MissingOutput, OutputOutsideRoot, confine
from dispatcher.report.counts import Counts
from dispatcher.report.reporter import Reporter, _platform
from dispatcher.runner.execute import prepare


@pytest.fixture
def template_task(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.txt").write_text("x")
    argv = [str(task_file("items_template")), "T", "--mixin", f"input={src}", f"output={out}"]
    return prepare(parse_command_line(argv)).task, out


def test_an_item_done_elsewhere_is_made_again_only_when_remade(template_task):
    task, out = template_task
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.txt.json").write_text("old")  # another run finished it after the plan
    with pytest.raises(DoneElsewhere), task.item_source().staged("a/x.txt") as outputs_:
        pytest.fail(f"staged {outputs_} for an item already done")
    assert (out / "a" / "x.txt.json").read_text() == "old"
    task.dispatch_force = True  # the flag is no longer what decides: the caller's remake is
    with pytest.raises(DoneElsewhere), task.item_source().staged("a/x.txt"):
        pass
    with task.item_source().staged("a/x.txt", remake=True) as made:
        task.process(input="unused", **made)
        assert (out / "a" / "x.txt.json").read_text() == "old"  # not before the commit
    assert (out / "a" / "x.txt.json").read_text() == "new"
    assert sorted(os.listdir(out / "a")) == ["x.txt.json"]  # no staging, no lock file left


def test_a_failed_item_leaves_nothing_and_releases_its_claim(template_task):
    task, out = template_task
    with pytest.raises(RuntimeError), task.item_source().staged("a/x.txt") as made:
        task.process(input="unused", **made)
        raise RuntimeError("the task failed after writing")
    assert os.listdir(out / "a") == []
    with pytest.raises(MissingOutput), task.item_source().staged("a/x.txt"):
        pass  # wrote nothing
    assert os.listdir(out / "a") == []
    with task.item_source().staged("a/x.txt") as made:  # the claim was let go both times
        task.process(input="unused", **made)
    assert sorted(os.listdir(out / "a")) == ["x.txt.json"]


def test_staging_names_are_new_per_attempt_and_after_fork(tmp_path):
    final = str(tmp_path / "b.mp4.json")
    names = {outputs.staging_path(final) for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        base = os.path.basename(name)
        assert re.fullmatch(r"\.b\.mp4\.dispatch-part-\d+-[0-9a-f]+\.json", base), base
        assert outputs.is_staging_name(base) and outputs.leftover_final(base) == "b.mp4.json"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its names must differ from any its parent makes next
        os.close(read)
        os.write(write, "\n".join(outputs.attempt_token() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        child = fh.read().split("\n")
    os.waitpid(pid, 0)
    parent = [outputs.attempt_token() for _ in range(3)]
    assert child[0].startswith(f"{pid}-")
    assert not set(child) & set(parent)
    assert not set(child) & {os.path.basename(n).split("-", 1)[1] for n in names}


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("a/b.json", "a/b.json"),
        (".hidden/b.json", ".hidden/b.json"),
        ("a/.b", "a/.b"),
        ("a//b.json", "a/b.json"),
        ("./a/b.json", "a/b.json"),
        ("a/./b.json", "a/b.json"),
        ("a/b/.", "a/b"),
        ("a/b/", "a/b"),
        ("b.json", "b.json"),
    ],
)
def test_confine_joins_every_spelling_to_one_path(tmp_path, relative, expected):
    root = str(tmp_path)
    assert confine(root, relative) == os.path.join(root, expected)
    assert confine(root + "/", relative) == os.path.join(root, expected)


def test_confine_still_refuses_a_folder_link_out_of_the_root(tmp_path):
    root, outside = tmp_path / "out", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "ok").mkdir()
    assert confine(str(root), "ok/a.json") == str(root / "ok" / "a.json")
    (root / "link").symlink_to(outside, target_is_directory=True)
    for relative in ("link/a.json", "link//a.json", "../outside/a.json", "/abs/a.json"):
        with pytest.raises(OutputOutsideRoot):
            confine(str(root), relative)


def test_successes_counted_per_chunk_equal_one_by_one(tmp_path):
    one, many = (Reporter(str(tmp_path / name), Counts(to_run=5), {}) for name in ("one", "many"))
    one.outcomes, many.outcomes = [], []
    keys = ["a", "b", "c"]
    for key in keys:
        one.record_outcome(Outcome(key, True))
    many.record_successes(keys)
    many.record_successes([])
    assert (one.counts.succeeded, one.counts.failed, one.counts.made_elsewhere) == (
        many.counts.succeeded,
        many.counts.failed,
        0,
    )
    assert many.outcomes == one.outcomes and many.counts.ran == 3
    assert many.progress._done == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux names its libc")
def test_the_run_records_platform_reads_as_platform_platform():
    assert _platform() == platform.platform()
