"""No item can make the dispatcher write outside the output root.

Hostile JSONL rows (`..`, absolute paths, NUL bytes, colliding fields), symlinks in the
output tree that lead out of it, and odd file names: the item fails with a clear reason
(or works, for names that are merely odd), and nothing outside the root changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import failure_reasons, run_dispatch, task_file, tree

from dispatcher.outputs import OutputOutsideRoot, confine, unsafe_reason
from dispatcher.stage import stage_for

TASK = task_file("outputs_confinement")


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes | None]:
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in dirs + files:
            p = here / name
            if p in skip:
                continue
            rel = os.fsencode(p.relative_to(root))
            out[rel] = None if p.is_dir() or p.is_symlink() else p.read_bytes()
    return out


@pytest.fixture
def world(tmp_path):
    """A sandbox: an input root, an output root, and files outside both."""
    src = tmp_path / "data" / "in"
    (src / "ok").mkdir(parents=True)
    (src / "ok" / "a.txt").write_text("a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    return tmp_path


def dispatch(world: Path, cls: str, rows: list, *args: str, out: Path | None = None):
    listing = world / "list.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = out or world / "data" / "out"
    return run_dispatch(
        TASK, cls, "--backbone", "serial", "--log-dir", world / "logs",
        "--mixin", f"input={world / 'data' / 'in'}", f"output={out}", *args,
        env={"LIST": str(listing)},
    )  # fmt: skip


HOSTILE = {
    "../escape.txt": "climbs out of the output root",
    "ok/../../../escape2.txt": "climbs out of the output root",
    "/etc/passwd-copy": "is absolute",
    "ok/nul\x00.txt": "contains a NUL byte",
    "./": "invalid item path ''",  # normalizes to the empty key: the input root itself
}


@pytest.mark.parametrize("cls", ["FromList", "Folders"])
def test_hostile_path_rows_fail_with_a_reason_and_write_nothing_outside(world, cls):
    before = snapshot(world, skip=(world / "data", world / "logs", world / "list.jsonl"))
    done = dispatch(world, cls, ["ok/a.txt", *HOSTILE])
    assert done.returncode == 1, done.stderr
    reasons = failure_reasons(world / "logs")
    normalized = {"ok/nul\x00.txt": "ok/nul\x00.txt", "/etc/passwd-copy": "/etc/passwd-copy"}
    for row, reason in HOSTILE.items():
        key = normalized.get(row, row.strip("./") if row == "./" else row)
        matching = [error for k, error in reasons.items() if k == key]
        assert matching and reason in matching[0], (row, reasons)
    assert "ok/a.txt" not in reasons
    after = snapshot(world, skip=(world / "data", world / "logs", world / "list.jsonl"))
    assert after == before
    out = world / "data" / "out"
    assert set(tree(out)) == ({"ok/a.txt.out"} if cls == "FromList" else {"ok/a.txt/m.txt"})
    assert not (world / "data" / "escape.txt.out").exists()
    assert not Path("/etc/passwd-copy.out").exists()


@pytest.mark.parametrize("cls", ["FromList", "Folders"])
def test_unsafe_keys_fail_alone_before_the_nesting_check_sees_them(world, cls):
    """`..` would hold `../escape` as a folder output: but neither can ever commit, so each
    fails alone with its reason and the safe rows still run."""
    rows = ["ok/a.txt", "..", "../escape", "ok/../../up"]
    before = snapshot(world, skip=(world / "data", world / "logs", world / "list.jsonl"))
    done = dispatch(world, cls, rows)
    assert done.returncode == 1, done.stderr
    reasons = failure_reasons(world / "logs")
    assert set(reasons) == {"..", "../escape", "ok/../../up"}, reasons
    assert all(error.startswith("OutputOutsideRoot: ") for error in reasons.values()), reasons
    out = world / "data" / "out"
    assert set(tree(out)) == ({"ok/a.txt.out"} if cls == "FromList" else {"ok/a.txt/m.txt"})
    assert snapshot(world, skip=(world / "data", world / "logs", world / "list.jsonl")) == before


def test_hostile_object_rows_and_colliding_fields(world):
    rows = [
        {"path": "ok/a.txt", "note": "fine"},
        {"path": "../../outside/keep.txt", "note": "climb"},
        {"path": "ok/b.txt", "output": "/tmp/x"},
        {"path": "ok/c.txt", "input": "/etc/shadow"},
    ]
    done = dispatch(world, "FromList", rows)
    assert done.returncode == 1
    reasons = failure_reasons(world / "logs")
    assert set(reasons) == {"../../outside/keep.txt", "ok/b.txt", "ok/c.txt"}
    assert "climbs out" in reasons["../../outside/keep.txt"]
    assert "collide" in reasons["ok/b.txt"] and "collide" in reasons["ok/c.txt"]
    assert (world / "outside" / "keep.txt").read_text() == "untouched"
    assert (world / "data" / "out" / "ok" / "a.txt.out").read_text() == "written"


def test_a_symlink_leading_out_of_the_root_is_refused_and_never_counts_as_done(world):
    out = world / "data" / "out"
    out.mkdir()
    (out / "link").symlink_to(world / "outside", target_is_directory=True)
    (out / "dangling").symlink_to(world / "nowhere" / "deeper", target_is_directory=True)
    (world / "outside" / "x.txt.out").write_text("planted")  # would look done via the link
    before = snapshot(world / "outside")
    rows = ["ok/a.txt", "link/x.txt", "link/new.txt", "dangling/y.txt"]
    plan = dispatch(world, "FromList", rows, "--plan")
    assert plan.returncode == 0 and "already done:   0" in plan.stdout, plan.stdout
    done = dispatch(world, "FromList", rows)
    assert done.returncode == 1
    reasons = failure_reasons(world / "logs")
    assert set(reasons) == {"link/x.txt", "link/new.txt", "dangling/y.txt"}
    assert all("resolves outside the output root" in r for r in reasons.values())
    assert snapshot(world / "outside") == before
    assert not (world / "nowhere").exists()


def test_a_symlinked_output_root_is_fine(world):
    real = world / "real-out"
    real.mkdir()
    (world / "data" / "out").symlink_to(real, target_is_directory=True)
    assert dispatch(world, "FromList", ["ok/a.txt"]).returncode == 0
    assert (real / "ok" / "a.txt.out").read_text() == "written"
    again = dispatch(world, "FromList", ["ok/a.txt"])
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_a_final_path_that_is_a_symlink_is_left_untouched_not_followed(world):
    # A link at a final path is no earlier output of the item: the commit neither follows
    # it nor replaces it (the user may own it); the item fails and says why.
    out = world / "data" / "out"
    (out / "ok").mkdir(parents=True)
    (out / "ok" / "a.txt.out").symlink_to(world / "outside" / "keep.txt")
    done = dispatch(world, "FromList", ["ok/a.txt"], "--force")
    assert done.returncode == 1, done.stderr
    assert "OutputConflict" in done.stderr and "is a symlink" in done.stderr
    assert os.readlink(out / "ok" / "a.txt.out") == str(world / "outside" / "keep.txt")
    assert (world / "outside" / "keep.txt").read_text() == "untouched"
    assert [p.name for p in (out / "ok").iterdir()] == ["a.txt.out"]


def test_odd_file_names_stay_inside_the_root(world):
    src = world / "data" / "in"
    names = ["-dash.txt", "sp ace.txt", "new\nline.txt", "back\\slash.txt", "dots...txt",
             "x...txt", "ünï ćode.txt", "ok/a..b.txt", "ok/.hidden.txt"]  # fmt: skip
    for name in names:
        (src / name).write_text(name)
    raw = os.fsencode(src) + b"/caf\xe9.txt"  # not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"bytes")
    skip = (world / "data", world / "logs", world / "list.jsonl")
    before = snapshot(world, skip=skip)
    done = dispatch(world, "Walked", [])
    assert done.returncode == 0, done.stderr
    out = world / "data" / "out"
    for name in names:
        hidden = any(part.startswith(".") for part in name.split("/"))
        assert (out / f"{name}.out").exists() != hidden, name
        if not hidden:
            assert (out / f"{name}.out").read_text() == name
    with open(os.fsencode(out) + b"/caf\xe9.txt.out", "rb") as fh:
        assert fh.read() == b"bytes"
    assert snapshot(world, skip=skip) == before
    again = dispatch(world, "Walked", [])
    assert "nothing to do" in again.stderr


def test_confine_directly():
    assert confine("/r", "a/./b") == "/r/a/b"
    for bad in ["../x", "/x", "a/../../x", "a\x00", "", "./", "a/.."]:
        assert unsafe_reason(bad)
        with pytest.raises(OutputOutsideRoot):
            confine("/r", bad)
    for fine in ["a", "a..b", "...", ".hidden", "a//b", "a\\..\\b"]:
        assert unsafe_reason(fine) is None


LINKED_TASK = task_file("outputs_linked")


@pytest.mark.parametrize("cls, planted", [("File", "a.txt.out"), ("Folder", "a.txt/m.txt")])
def test_the_done_mask_and_is_executed_agree_through_a_link_out_of_the_root(world, cls, planted):
    from dispatcher.cli import parse_command_line
    from dispatcher.plan import make_plan
    from dispatcher.runner.preparation import prepare

    src, out = world / "data" / "in", world / "data" / "out"
    (src / "sub").mkdir()
    (src / "sub" / "a.txt").write_text("a")
    # OUT/sub leads to a folder outside the root that holds what looks like the output.
    (out / "ok").mkdir(parents=True)
    (out / "sub").symlink_to(Path("..") / ".." / "outside", target_is_directory=True)
    for base in (world / "outside", out / "ok"):  # the same output, outside and inside
        marker = base / planted
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("planted")
    command = [str(LINKED_TASK), cls, "--backbone", "serial",
               "--mixin", f"input={src}", f"output={out}"]  # fmt: skip
    task = prepare(parse_command_line(command)).task
    plan = make_plan(stage_for(task), [])
    assert [key for key, _ in plan.pending] == ["sub/a.txt"] and plan.done == 1
    items = [("ok/a.txt", None), ("sub/a.txt", None)]
    assert list(task.item_source().done_mask(items)) == [True, False]
    assert task.is_executed(input=str(src / "ok" / "a.txt"))
    assert not task.is_executed(input=str(src / "sub" / "a.txt"))
