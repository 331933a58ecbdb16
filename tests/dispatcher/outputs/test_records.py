"""What the run says about its items is true: empty and missing inputs, duplicate keys,
failure records that name their row, and reruns under another configuration.

Every test runs the `dispatch` command line (in this process) with the serial backbone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, dispatch_here, failures, run_dirs, run_record, task_file, write_file

TASK = task_file("outputs_records")


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    for name, text in [("a.txt", "a"), ("sub/b.txt", "b"), ("sub/c.txt", "bad")]:
        write_file(tmp_path / "in" / name, text)
    return tmp_path


def dispatch(ds: Path, cls: str, *args: str):
    return dispatch_here(TASK, cls, "--backbone", "serial", "--log-dir", ds / "logs", *args, cwd=ds)


def records(ds: Path, cls: str) -> list[Path]:
    """The run records (`run.json`) of one task class, oldest first."""
    return [run / "run.json" for run in run_dirs(ds / "logs", cls)]


# --- inputs ---------------------------------------------------------------------------


def test_an_empty_input_folder_says_no_items_found(ds):
    (ds / "empty").mkdir()
    done = dispatch(ds, "Shout", "--mixin", f"input={ds / 'empty'}", f"output={ds / 'out'}")
    assert done.returncode == 0, done.stderr
    assert "all done" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith(
        f"dispatch: no items found under {ds / 'empty'} (input mode InputByExtensions"
    )
    assert not (ds / "out").exists() and not (ds / "logs").exists()


def test_a_plain_task_without_items_says_so(ds):
    done = dispatch(ds, "Nothing")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "dispatch: no items found (Nothing.generate_tasks yielded none)"


def test_a_missing_input_root_of_a_jsonl_list_is_exit_2(ds):
    listing = write_file(ds / "list.jsonl", '"a.txt"\n')
    done = dispatch(
        ds, "Listed", "--mixin", f"input={ds / 'nowhere'}", f"output={ds / 'out'}",
        f"input_mode.path={listing}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"dispatch: error: mixin 'input': input folder {ds / 'nowhere'} does not exist"
    )


def test_a_missing_jsonl_list_is_exit_2(ds):
    done = dispatch(ds, "Rows", "--mixin", f"input={ds / 'none.jsonl'}", f"output={ds / 'out'}")
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert len(done.stderr.splitlines()) == 1


# --- duplicates -----------------------------------------------------------------------


def test_a_duplicate_key_in_a_jsonl_list_is_exit_2_naming_its_lines(ds):
    rows = [{"id": "ok", "v": 1}, {"id": "x", "v": 2}, {"id": "ok", "v": 3}, {"id": "y"},
            {"id": "x", "v": 5}, {"id": "ok", "v": 6}]  # fmt: skip
    listing = write_file(ds / "list.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for extra in ([], ["--plan"]):
        done = dispatch(ds, "Rows", "--mixin", f"input={listing}", f"output={ds / 'out'}", *extra)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("dispatch: error: ")
        assert "2 keys are listed more than once" in line
        assert f"'ok' at {listing}:1, {listing}:3, {listing}:6" in line
        assert f"'x' at {listing}:2, {listing}:5" in line
        assert not (ds / "out").exists()


def test_duplicates_of_a_plain_task_run_once_and_are_reported(ds):
    out = ds / "out"
    plan = dispatch(ds, "Doubled", "--mixin", f"out={out}", "--plan")
    assert plan.returncode == 0, plan.stderr
    assert "items found:    3" in plan.stdout
    assert "duplicates:     3 dropped (same key as an earlier item: a, b)" in plan.stdout

    done = dispatch(ds, "Doubled", "--mixin", f"out={out}")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    assert "dispatch: 3 duplicate items ran once (same key as an earlier item: a, b)" in done.stderr
    record = run_record(ds / "logs", "Doubled")
    assert record["counts"]["duplicates"] == 3 and record["counts"]["found"] == 3
    assert record["duplicate_keys"] == ["a", "b"]


# --- failure records ------------------------------------------------------------------


def test_failure_records_of_jsonl_rows_carry_the_row_and_its_line(ds):
    rows = [{"id": "ok", "v": 1}, {"id": "x", "bad": True, "v": 2}]
    listing = ds / "list.jsonl"
    listing.write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))
    done = dispatch(ds, "Rows", "--mixin", f"input={listing}", f"output={ds / 'out'}")
    assert done.returncode == 1, done.stderr
    (failure,) = failures(ds / "logs", "Rows")
    assert failure["key"] == "x"
    assert failure["item"] == {
        "input": str(ds / "x"),
        "row": {"id": "x", "bad": True, "v": 2},
        "source": f"{listing}:3",
    }


def test_failure_records_of_path_rows_carry_the_row_and_its_line(ds):
    listing = write_file(ds / "list.jsonl", '"a.txt"\n"./sub/b.txt"\n')
    done = dispatch(
        ds, "Listed", "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}",
        f"input_mode.path={listing}",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    rows = failures(ds / "logs", "Listed")
    assert [(f["key"], f["item"]) for f in rows] == [
        ("a.txt", {"input": str(ds / "in/a.txt"), "row": "a.txt", "source": f"{listing}:1"}),
        (
            "sub/b.txt",
            {"input": str(ds / "in/sub/b.txt"), "row": "./sub/b.txt", "source": f"{listing}:2"},
        ),
    ]


def test_failure_records_of_files_carry_the_input_path(ds):
    done = dispatch(ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}")
    assert done.returncode == 1, done.stderr
    (failure,) = failures(ds / "logs", "Shout")
    assert failure["key"] == "sub/c.txt"
    assert failure["item"] == {"input": str(ds / "in/sub/c.txt")}


# --- reruns under another configuration ----------------------------------------------


def test_a_rerun_with_another_configuration_says_what_differs(ds):
    (ds / "in/sub/c.txt").write_text("c")
    base = ["--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}"]
    first = dispatch(ds, "Shout", *base)
    assert first.returncode == 0, first.stderr
    same = dispatch(ds, "Shout", *base, "--shard", "0/1")  # the shard is not configuration
    assert same.returncode == 0
    assert "nothing to do" in same.stderr and "configuration" not in same.stderr

    other = dispatch(ds, "Shout", *base, "suffix=+", "--times", "2")
    assert other.returncode == 0, other.stderr
    (line,) = other.stderr.splitlines()
    assert "nothing to do: 3 items in this shard, all done" in line
    assert "made with another configuration" in line
    assert "suffix: '!' -> '+'" in line and "--times: 1 -> 2" in line
    assert "--force" in line and str(records(ds, "Shout")[-1]) in line
    assert (ds / "out/a.txt.out").read_text() == "A!"


def test_pending_items_next_to_ones_made_otherwise_get_a_note(ds):
    (ds / "in/sub/c.txt").write_text("c")
    base = ["--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}"]
    assert dispatch(ds, "Shout", *base).returncode == 0
    (ds / "out/a.txt.out").unlink()
    again = dispatch(ds, "Shout", *base, "suffix=+")
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "another configuration" in line]
    assert len(notes) == 1 and "2 done items" in notes[0] and "suffix: '!' -> '+'" in notes[0]
    assert (ds / "out/a.txt.out").read_text() == "A+"
    assert (ds / "out/sub/b.txt.out").read_text() == "B!"


def test_a_run_for_another_output_root_is_not_compared(ds):
    (ds / "in/sub/c.txt").write_text("c")
    assert (
        dispatch(ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / 'o1'}").returncode
        == 0
    )
    assert dispatch(ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / 'o2'}",
                    "suffix=+").returncode == 0  # fmt: skip
    again = dispatch(
        ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / 'o2'}", "suffix=+"
    )
    assert "nothing to do" in again.stderr and "configuration" not in again.stderr


def test_drift_is_found_after_many_other_runs_and_from_another_folder(ds):
    """What made the outputs is recorded beside them: neither the runs since nor the
    working directory hides it."""
    (ds / "in/sub/c.txt").write_text("c")
    base = ["--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}"]
    first = dispatch(ds, "Shout", *base)
    assert first.returncode == 0, first.stderr
    for i in range(9):  # more runs than any number of newest records one could read
        other = dispatch(ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / f'o{i}'}")
        assert other.returncode == 0, other.stderr
    again = dispatch(ds, "Shout", *base, "suffix=+")
    assert again.returncode == 0, again.stderr
    assert (
        "made with another configuration" in again.stderr and "suffix: '!' -> '+'" in again.stderr
    )
    assert str(records(ds, "Shout")[0]) in again.stderr  # the run that made them
    elsewhere = ds / "elsewhere"
    elsewhere.mkdir()
    moved = dispatch_here(TASK, "Shout", "--backbone", "serial", *base, "suffix=+",
                          cwd=elsewhere)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "made with another configuration" in moved.stderr, moved.stderr
    assert not (elsewhere / "dispatch-logs").exists()  # nothing to do: no record of its own


def test_the_provenance_record_is_hidden_and_never_an_input(ds):
    (ds / "in/sub/c.txt").write_text("c")
    assert (
        dispatch(ds, "Shout", "--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}").returncode
        == 0
    )
    hidden = [p.name for p in (ds / "out").iterdir() if p.name.startswith(".")]
    assert hidden == [".dispatch-run.Shout"]
    made = json.loads((ds / "out" / hidden[0]).read_text())
    assert made["task_class"] == "Shout" and made["config"]["mixin"]["suffix"] == "!"
    assert made["run_record"] == str(records(ds, "Shout")[0])
    # The outputs as the next task's inputs, hidden names included: never an item.
    from templates.walk import walk, walk_suffixes

    assert walk(str(ds / "out"), hidden=True) == ["a.txt.out", "sub/b.txt.out", "sub/c.txt.out"]
    groups = walk_suffixes(str(ds / "out"), ("", ".out"), hidden=True)
    keys = [prefix + name for prefix, names in groups for name in names]
    assert keys == ["a.txt.out", "sub/b.txt.out", "sub/c.txt.out"]
    # No extension: a consumer's `*.json` or `*.out` glob over the outputs never matches it.
    assert [p.name for p in (ds / "out").glob("*.out")] == ["a.txt.out"]
    assert list((ds / "out").rglob("*.json")) == []


def test_outputs_made_before_provenance_records_are_still_compared(ds):
    (ds / "in/sub/c.txt").write_text("c")
    base = ["--mixin", f"input={ds / 'in'}", f"output={ds / 'out'}"]
    assert dispatch(ds, "Shout", *base).returncode == 0
    (ds / "out" / ".dispatch-run.Shout").unlink()  # as an older version left them
    other = dispatch(ds, "Shout", *base, "suffix=+")
    assert "made with another configuration" in other.stderr, other.stderr


def test_the_example_task_refuses_a_missing_input_folder(tmp_path):
    done = dispatch_here(
        REPO / "tasks/wordcount.py", "WordCount", "--backbone", "serial",
        "--mixin", f"input={tmp_path / 'nope'}", f"output={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"dispatch: error: mixin 'input': input folder {tmp_path / 'nope'} does not exist"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "dispatch-logs").exists()
