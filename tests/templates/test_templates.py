"""Template decorators: every input, output and finish mode, placeholders in every field.

Most tests run the real command in-process (`dispatcher.cli.main`) on real files with the
serial backbone; a few go through a subprocess and the process pool. The tasks are
tests/tasks/templates_*.py: one class per declared mode, so a test names what it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import tempfile
from pathlib import Path

import pytest
from conftest import failures, run_dispatch, task_file
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatcher.cli import main, parse_command_line
from dispatcher.execution.steps import run_item
from dispatcher.outputs.records import is_provenance_name
from dispatcher.plan import make_plan
from dispatcher.runner.preparation import prepare
from dispatcher.stage import stage_for
from templates.adapters.torch_task import data_source, done_check

COPY = task_file("templates_copy")
INPUTS = task_file("templates_inputs")
OUTPUTS = task_file("templates_outputs")
EVERYTHING = task_file("templates_placeholders")
BAD_MODES = task_file("templates_bad_modes")
HOOKS = task_file("templates_hooks")


def write(path: Path, text: str | bytes = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def run(tmp_path: Path, capsys, task: Path, cls: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(
        [str(task), cls, "--backbone", "serial", "--log-dir", str(tmp_path / "logs"), *args]
    )
    out, err = capsys.readouterr()
    return code, out, err


def plan_of(task: Path, cls: str, *args: str, backbone: tuple[str, ...] = ("--backbone", "serial")):
    """The real plan (in-process, nothing run) for a command line."""
    prepared = prepare(parse_command_line([str(task), cls, *backbone, *args]))
    return prepared.task, make_plan(prepared.stage, prepared.shards)


def keys(task: Path, cls: str, *args: str) -> list[str]:
    return [key for key, _ in plan_of(task, cls, *args)[1].pending]


def files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not is_provenance_name(p.name)
    }


# --- input modes --------------------------------------------------------------------------


def test_extensions_are_recursive_case_insensitive_and_skip_hidden(tmp_path):
    src = tmp_path / "in"
    for name in ["a.mp4", "b.MKV", "deep/er/c.Mp4", "d.txt", ".hidden.mp4", "dir/._e.mp4"]:
        write(src / name)
    (src / "folder.mp4").mkdir()  # a folder is never a file item
    found = keys(COPY, "CopyVideos", "--mixin", f"input={src}", f"output={tmp_path / 'out'}")
    assert found == ["a.mp4", "b.MKV", "deep/er/c.Mp4"]


def test_extensions_hidden_true_still_never_lists_staging_leftovers(tmp_path):
    src = tmp_path / "in"
    write(src / ".h.txt")
    write(src / ".x.dispatch-part.txt")
    write(src / "v.txt")
    assert keys(
        COPY, "CopyTextHiddenToo", "--mixin", f"input={src}", f"output={tmp_path / 'o'}"
    ) == [
        ".h.txt",
        "v.txt",
    ]


def test_symlinked_files_count_symlinked_folders_only_when_followed(tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    write(elsewhere / "e.txt")
    write(src / "real.txt")
    (src / "link.txt").symlink_to(elsewhere / "e.txt")
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)
    common = ["--mixin", f"input={src}", f"output={tmp_path / 'o'}"]
    assert keys(COPY, "CopyTextFollowingLinks", *common) == ["link.txt", "real.txt"]
    followed = keys(COPY, "CopyTextFollowingLinks", *common, "input_mode.follow_links=true")
    assert followed == ["link.txt", "linked/e.txt", "real.txt"]  # the loop is walked once


def test_glob_patterns(tmp_path):
    src = tmp_path / "in"
    for name in ["a.jpg", "x/b.jpg", "x/y/c.jpg", "x/frames/d.png", "z/frames/e.PNG", "f.png"]:
        write(src / name)

    def by(*patterns: str, extra: tuple[str, ...] = ()) -> list[str]:
        value = "[" + ",".join(json.dumps(p) for p in patterns) + "]"
        return keys(
            COPY,
            "CopyByGlob",
            "--mixin",
            f"input={src}",
            f"output={tmp_path / 'o'}",
            f"input_mode.pattern={value}",
            *extra,
        )

    assert by("**/*.jpg") == ["a.jpg", "x/b.jpg", "x/y/c.jpg"]
    assert by("*.jpg") == ["a.jpg"]
    assert by("*/*.jpg") == ["x/b.jpg"]
    assert by("x/**") == ["x/b.jpg", "x/frames/d.png", "x/y/c.jpg"]
    assert by("*/frames/*.png") == ["x/frames/d.png"]
    assert by("*/frames/*.png", extra=("input_mode.case_sensitive=false",)) == [
        "x/frames/d.png",
        "z/frames/e.PNG",
    ]
    assert by("[af].*", "x/?.jpg") == ["a.jpg", "f.png", "x/b.jpg"]


def test_depth_items_are_folders_or_files_at_that_level(tmp_path):
    src = tmp_path / "in"
    for name in ["s1/f1.png", "s1/f2.png", "s2/f1.png", "s2/sub/g.png", "top.png"]:
        write(src / name)
    task = INPUTS
    common = ["--mixin", f"input={src}", f"output={tmp_path / 'out'}"]
    assert keys(task, "Scenes", *common) == ["s1", "s2"]
    assert keys(task, "Scenes", *common, "input_mode.depth=2") == ["s2/sub"]
    assert keys(task, "Scenes", *common, "input_mode.depth=2", "input_mode.kind=file") == [
        "s1/f1.png",
        "s1/f2.png",
        "s2/f1.png",
    ]
    assert keys(task, "Scenes", *common, "input_mode.kind=any") == ["s1", "s2", "top.png"]


def test_depth_run_writes_one_output_per_folder(tmp_path, capsys):
    src = tmp_path / "in"
    for name in ["s1/f1.png", "s1/f2.png", "s2/f1.png"]:
        write(src / name)
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, INPUTS, "Scenes", "--mixin", f"input={src}", f"output={out}"
    )
    assert code == 0, err
    assert files(out) == {"s1.json": '["f1.png", "f2.png"]', "s2.json": '["f1.png"]'}


def test_jsonl_path_rows_are_normalized_and_deduplicated(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "a/x.txt", "ax")
    write(src / "b.txt", "b")
    rows = ['"a/x.txt"', '"./b.txt"', f'"{src}/a/x.txt"', '"a//x.txt"', "", '  "b.txt"  ']
    listing = write(tmp_path / "list.jsonl", "\n".join(rows) + "\n")
    args = ["--mixin", f"input={src}", f"output={tmp_path / 'out'}", f"input_mode.path={listing}"]
    task_obj, plan = plan_of(COPY, "CopyFromJsonl", *args)
    assert [k for k, _ in plan.pending] == ["a/x.txt", "b.txt"]
    assert plan.duplicates == 3
    code, _, err = run(tmp_path, capsys, COPY, "CopyFromJsonl", *args)
    assert code == 0, err
    assert files(tmp_path / "out") == {"a/x.txt.out": "ax", "b.txt.out": "b"}


def test_jsonl_object_rows_pass_their_fields(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "v/1.mp4", "one")
    rows = [
        {"path": "v/1.mp4", "caption": "a cat", "fps": 30},
        {"path": "v/2.mp4", "caption": "no file", "fps": 25},
    ]
    listing = write(tmp_path / "list.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, INPUTS, "Meta", "--mixin", f"input={src}", f"output={out}",
        f"input_mode.path={listing}",
    )  # fmt: skip
    assert code == 0, err
    got = {k: json.loads(v) for k, v in files(out).items()}
    assert got == {
        "v/1.mp4.json": {"input": "v/1.mp4", "path": "v/1.mp4", "caption": "a cat", "fps": 30, "exists": True},
        "v/2.mp4.json": {"input": "v/2.mp4", "path": "v/2.mp4", "caption": "no file", "fps": 25, "exists": False},
    }  # fmt: skip


def test_jsonl_as_input_with_a_custom_key_field(tmp_path, capsys):
    listing = write(
        tmp_path / "data" / "records.jsonl",
        '{"id": "r/1", "text": "hello"}\n{"id": "r/2", "text": "bye"}\n',
    )
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, INPUTS, "Upper", "--mixin", f"input={listing}", f"output={out}"
    )
    assert code == 0, err
    assert files(out) == {"r/1.txt": "HELLO r/1", "r/2.txt": "BYE r/2"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "list.jsonl:2: not valid JSON"),
        ('{"name": "a"}', "list.jsonl:2: the row has no string field 'path'"),
        ('{"path": 3}', "list.jsonl:2: the row has no string field 'path'"),
        ("[1, 2]", "list.jsonl:2: a row must be a path string or an object, got list"),
        ("42", "got int"),
    ],
)
def test_bad_jsonl_rows_stop_the_run_with_the_line_number(tmp_path, capsys, line, message):
    src = tmp_path / "in"
    write(src / "a.txt")
    listing = write(tmp_path / "list.jsonl", f'"a.txt"\n{line}\n')
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, COPY, "CopyFromJsonl", "--mixin", f"input={src}", f"output={out}",
        f"input_mode.path={listing}",
    )  # fmt: skip
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "logs").exists()


def test_an_output_root_inside_the_input_root_is_refused(tmp_path, capsys):
    src = tmp_path / "data"
    write(src / "a.txt", "a")
    args = ["--mixin", f"input={src}", f"output={src / 'results'}"]
    code, _, err = run(tmp_path, capsys, COPY, "CopyTextAndOut", *args)
    assert code == 2 and "is inside the input root" in err, err
    assert not (src / "results").exists() and not (tmp_path / "logs").exists()


def test_an_output_root_beside_a_jsonl_file_input_is_not_inside_it(tmp_path, capsys):
    """A JSONL file that lists the items is the input root: nothing around it is walked, so
    outputs may go beside it; an input folder named beside its list is still an input root."""
    rows = write(tmp_path / "data" / "rows.jsonl", '{"id": "a"}\n')
    out = tmp_path / "data" / "out"
    code, _, err = run(
        tmp_path, capsys, INPUTS, "Rows", "--mixin", f"input={rows}", f"output={out}"
    )
    assert code == 0, err
    assert files(out) == {"rows.jsonl.out": "a"}

    write(tmp_path / "data" / "a.txt", "a")
    listing = write(tmp_path / "data" / "list.jsonl", '"a.txt"\n')
    args = ["--mixin", f"input={listing}", f"output={tmp_path / 'data' / 'copies'}"]
    code, _, err = run(tmp_path, capsys, COPY, "CopyFromJsonl", *args)
    assert code == 0, err
    assert files(tmp_path / "data" / "copies") == {"a.txt.out": "a"}
    args = ["--mixin", f"input={tmp_path / 'data'}", f"output={tmp_path / 'data' / 'more'}",
            f"input_mode.path={listing}"]  # fmt: skip
    code, _, err = run(tmp_path, capsys, COPY, "CopyFromJsonl", *args)
    assert code == 2 and "is inside the input root" in err, err


# --- output modes and finish checks -------------------------------------------------------


def test_output_with_extension_is_staged_then_committed(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "a/b.mp4", "video")
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, OUTPUTS, "Probe", "--mixin", f"input={src}", f"output={out}"
    )
    assert code == 0, err
    assert list(files(out)) == ["a/b.mp4.json"]
    staging = json.loads(files(out)["a/b.mp4.json"])["staging"]
    assert re.fullmatch(r"\.b\.mp4\.dispatch-part-\d+-[0-9a-f]+\.json", staging), staging


def test_an_output_not_written_fails_the_item_and_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "a.txt")
    write(src / "b.txt")
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, OUTPUTS, "Partial", "--mixin", f"input={src}", f"output={out}"
    )
    assert code == 1
    assert files(out) == {"b.txt/main.json": "m", "b.txt/t/thumb.jpg": "t"}
    assert sorted(os.listdir(out)) == [".dispatch-run.Partial", "b.txt"]  # no staging for a.txt
    row = failures(tmp_path / "logs")[0]
    assert row["key"] == "a.txt" and "t/thumb.jpg" in row["error"]


@pytest.mark.parametrize(
    "clip, rerun_after_losing_a_clip",
    [("Clip", True), ("ClipDoneWithManifest", False), ("ClipDoneWithFolder", False)],
)  # fmt: skip
def test_subfolder_outputs_and_finish_checks(tmp_path, capsys, clip, rerun_after_losing_a_clip):
    src = tmp_path / "in"
    write(src / "cats/a.mp4")
    write(src / "b.mp4")
    task = OUTPUTS
    out = tmp_path / "out"
    args = ["--mixin", f"input={src}", f"output={out}"]
    code, _, err = run(tmp_path, capsys, task, clip, *args)
    assert code == 0, err
    assert files(out) == {
        "b.mp4/clip_000.txt": "b.mp4 0",
        "b.mp4/clip_001.txt": "b.mp4 1",
        "b.mp4/clips.json": '["clip_000.txt", "clip_001.txt"]',
        "cats/a.mp4/clip_000.txt": "a.mp4 0",
        "cats/a.mp4/clip_001.txt": "a.mp4 1",
        "cats/a.mp4/clips.json": '["clip_000.txt", "clip_001.txt"]',
    }
    assert keys(task, clip, *args) == []
    (out / "b.mp4" / "clip_000.txt").unlink()
    assert keys(task, clip, *args) == (["b.mp4"] if rerun_after_losing_a_clip else [])
    assert run(tmp_path, capsys, task, clip, *args)[0] == 0
    (out / "cats" / "a.mp4" / "clips.json").unlink()
    expected = [] if clip == "ClipDoneWithFolder" else ["cats/a.mp4"]
    assert keys(task, clip, *args) == expected


def test_force_replaces_a_folder_output_as_a_whole(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "a.mp4")
    out = tmp_path / "out"
    args = ["--mixin", f"input={src}", f"output={out}"]
    assert run(tmp_path, capsys, OUTPUTS, "Clip", *args)[0] == 0
    write(out / "a.mp4" / "stale.txt")
    assert run(tmp_path, capsys, OUTPUTS, "Clip", *args, "--force")[0] == 0
    assert sorted(files(out)) == ["a.mp4/clip_000.txt", "a.mp4/clip_001.txt", "a.mp4/clips.json"]
    assert sorted(os.listdir(out)) == [".dispatch-run.Clip", "a.mp4"]


# --- placeholders, hard and soft shards ---------------------------------------------------


def test_every_field_can_be_a_placeholder_and_h_lists_them(tmp_path, capsys):
    task = EVERYTHING
    code, out, _ = run(tmp_path, capsys, task, "Everything", "-h")
    assert code == 0
    for path in ["input ", "output ", "input_mode.exts", "output_mode.ext", "finish.name",
                 "hard_shard.shard", "shard.shard_idx", "shard.shard_num", "suffix"]:  # fmt: skip
        assert f"  {path}" in out, path
    base = tmp_path / "base"
    for part in (0, 1):
        for i in range(6):
            write(base / str(part) / "in" / f"f{i}.md", f"{part}-{i}")
    args = [
        "--mixin", f"input={base}/{{shard}}/in", f"output={base}/{{shard}}/out",
        "hard_shard.shard=1", "input_mode.exts=[.md]", "output_mode.ext=.res",
        "shard.shard_idx=[0,2]", "shard.shard_num=3", "suffix=+",
    ]  # fmt: skip
    assert keys(task, "Everything", *args) == ["f0.md", "f2.md", "f3.md", "f5.md"]
    code, _, err = run(tmp_path, capsys, task, "Everything", *args)
    assert code == 0, err
    assert files(base / "1" / "out") == {
        "f0.md.res": "1-0+", "f2.md.res": "1-2+", "f3.md.res": "1-3+", "f5.md.res": "1-5+",
    }  # fmt: skip
    assert not (base / "0" / "out").exists()


def test_nested_template_shards_then_cli_shard(tmp_path):
    src = tmp_path / "in"
    names = [f"f{i:02d}.txt" for i in range(24)]
    for name in names:
        write(src / name)
    task, cls = COPY, "CopyNestedShards"
    common = ["--mixin", f"input={src}", f"output={tmp_path / 'o'}"]
    odd = names[1::2]
    nested = [k for i, k in enumerate(odd) if i % 3 in (0, 1)]
    assert keys(task, cls, *common) == nested
    both = keys(task, cls, *common, "--shard", "1/2", "--shard-mode", "index")
    assert both == nested[1::2]
    by_hash = [keys(task, cls, *common, "--shard", f"{i}/3") for i in range(3)]
    assert sorted(sum(by_hash, [])) == nested


def test_configuration_problems_are_reported_together_exit_2(tmp_path, capsys):
    task = EVERYTHING
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, task, "Everything", "--mixin", f"input={tmp_path / 'missing'}",
        f"output={out}", "hard_shard.shard=1", "output_mode.ext=a/b", "finish.name=nope",
        "shard.shard_idx=5", "shard.shard_num=2",
    )  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert any("hard_shard" in line and "{shard}" in line for line in lines), err
    assert any("output_mode.ext" in line for line in lines), err
    assert any("shard_idx 5 is out of range" in line for line in lines), err
    assert all(line.startswith("dispatch: error: ") for line in lines)
    assert not out.exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "cls, message",
    [
        ("EmptyExtension", "output_mode.ext"),
        ("NoExtensions", "input_mode.exts"),
        ("GlobAboveTheRoot", "input_mode.pattern"),
        ("DepthZero", "input_mode.depth"),
        ("UnknownKind", "input_mode.kind"),
        ("FileAboveTheFolder", "climbs out"),
        ("NameNotAnIdentifier", "identifier"),
        ("MissingList", "does not exist"),
    ],
)
def test_bad_mode_values_exit_2(tmp_path, capsys, cls, message):
    write(tmp_path / "in" / "a.txt")
    out = tmp_path / "out"
    code, _, err = run(
        tmp_path, capsys, BAD_MODES, cls, "--mixin", f"input={tmp_path / 'in'}", f"output={out}"
    )
    assert code == 2 and message in err, err
    assert not out.exists()


def test_input_root_missing_or_output_root_a_file_exit_2(tmp_path, capsys):
    write(tmp_path / "file")
    code, _, err = run(
        tmp_path,
        capsys,
        COPY,
        "CopyText",
        "--mixin",
        f"input={tmp_path / 'nope'}",
        f"output={tmp_path / 'file'}",
    )
    assert code == 2
    assert "input folder" in err and "does not exist" in err and "is not a folder" in err


def test_decorator_misuse_is_a_type_error():
    from dispatcher import Task, TorchTask
    from templates import InputByExtensions, OutputWithExtension, cpu_task, torch_task

    modes = {"input_mode": InputByExtensions(exts=[".x"]), "output_mode": OutputWithExtension()}
    with pytest.raises(TypeError, match="torch_task"):
        cpu_task(**modes)(type("T", (TorchTask,), {}))
    with pytest.raises(TypeError, match="cpu_task"):
        torch_task(**modes)(type("C", (Task,), {}))
    with pytest.raises(TypeError, match="output_mode"):
        cpu_task(input_mode=modes["input_mode"], output_mode="x.json")(type("C", (Task,), {}))
    with pytest.raises(TypeError, match="template owns"):
        cpu_task(**modes)(type("C", (Task,), {"mixin": {"input": 1}}))


# --- hooks, compatibility and pickling ----------------------------------------------------


def test_plain_class_kagurazaka_hooks_and_pickling(tmp_path):
    src = tmp_path / "in"
    write(src / "a.txt", "A")
    write(src / "s/b.txt", "B")
    task, plan = plan_of(HOOKS, "Plain", "--mixin", f"input={src}", f"output={tmp_path / 'o'}")
    from dispatcher import Task

    assert isinstance(task, Task)
    assert list(task.generate_tasks()) == [
        {"input": str(src / "a.txt")},
        {"input": str(src / "s/b.txt")},
    ]
    assert not task.is_executed(input=str(src / "a.txt"))
    clone = pickle.loads(pickle.dumps(task))
    assert run_item(stage_for(clone), ("a.txt", None)).ok
    assert task.is_executed(input=str(src / "a.txt"))
    assert list(task.item_source().done_mask(plan.pending)) == [True, False]


def test_torch_task_hooks_without_torch(tmp_path):
    src = tmp_path / "in"
    write(src / "x/1.jpg", "one")
    write(src / "2.jpg", "two")
    out = tmp_path / "out"
    task, plan = plan_of(
        HOOKS,
        "Embed",
        "--mixin",
        f"input={src}",
        f"output={out}",
        backbone=("--backbone", "torch", "--device", "cpu"),
    )
    assert data_source(type(task)) == "items" and done_check(type(task)) == "each"
    assert [k for k, _ in plan.pending] == ["2.jpg", "x/1.jpg"]
    key, payload = plan.pending[1]
    row = task.load_data(**task.item_source().payload(key, payload))
    with task.item_source().staged(key) as outputs:
        task.postprocess_each(0, 1, result=len(row["text"]), **outputs)
    assert (out / "x" / "1.jpg.emb").read_text() == "3"
    assert task.is_each_executed(input=str(src / "x" / "1.jpg"))
    assert [k for k, _ in make_plan(stage_for(task), []).pending] == ["2.jpg"]


def test_process_pool_runs_a_template_task(tmp_path):
    src = tmp_path / "in"
    for i in range(30):
        write(src / f"d{i % 3}" / f"{i:02d}.txt", str(i))
    out = tmp_path / "out"
    done = run_dispatch(
        COPY, "CopyText", "--backbone", "mp", "--num-process", "2", "--start-method", "spawn",
        "--log-dir", tmp_path / "logs", "--mixin", f"input={src}", f"output={out}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert files(out) == {f"d{i % 3}/{i:02d}.txt.out": str(i) for i in range(30)}
    assert os.listdir(tmp_path / "logs")


# --- properties of the walk and the done check --------------------------------------------

NAME = st.text(st.sampled_from("aB0-._ !~é/"), min_size=1, max_size=5).filter(
    lambda s: all(part and not part.startswith(".") for part in s.split("/"))
)


def _tree(paths: list[str], base: Path) -> list[str]:
    """Create files at `paths` (skipping ones that clash with folders); returns the keys."""
    made = []
    for rel in paths:
        path = base / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(rel)
                made.append(rel)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
    return made


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NAME.map(lambda s: s + ".txt"), max_size=30), st.randoms(use_true_random=False))
@example(["a/x.txt", "a-b/y.txt", "a.txt", "a0/z.txt", "a b/c/d.txt", "a!.txt"], random.Random(0))
def test_walk_yields_keys_in_exact_sorted_order(paths, rnd):
    from templates.walk import walk_suffixes

    with tempfile.TemporaryDirectory() as tmp:
        made = _tree(paths, Path(tmp))
        rnd.shuffle(made)
        groups = walk_suffixes(tmp, (".txt",))
        walked = [prefix + name for prefix, names in groups for name in names]
        assert walked == sorted(made)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(NAME.map(lambda s: s + ".txt"), max_size=25),
    st.data(),
    st.sampled_from(["", "--shard 1/2", "--shard 0/3 --shard-mode index"]),
)
def test_done_check_agrees_with_the_filesystem(paths, data, shard):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "in").mkdir()
        made = sorted(_tree(paths, base / "in"))
        done = data.draw(st.sets(st.sampled_from(made))) if made else set()
        for rel in done:
            write(base / "out" / f"{rel}.out", "done")
        listing = write(base / "list.jsonl", "".join(json.dumps(k) + "\n" for k in made))
        for cls, listed in (("CopyText", []), ("CopyFromJsonl", [f"input_mode.path={listing}"])):
            _, plan = plan_of(
                COPY,
                cls,
                *shard.split(),
                "--mixin",
                f"input={base / 'in'}",
                f"output={base / 'out'}",
                *listed,
            )
            in_shard = plan.in_shard
            pending = [k for k, _ in plan.pending]
            assert all(k not in done for k in pending)
            assert plan.done == in_shard - len(pending)
            if not shard:
                assert pending == sorted(set(made) - done) and plan.done == len(done)


def test_subfolder_files_and_finish_name_as_placeholders(tmp_path, capsys):
    write(tmp_path / "in" / "a.mp4")
    task = OUTPUTS
    out = tmp_path / "out"
    args = ["--mixin", f"input={tmp_path / 'in'}", f"output={out}",
            "output_mode.files={meta: meta.json, thumb: t/0.jpg}", "finish.name=meta"]  # fmt: skip
    code, _, err = run(tmp_path, capsys, task, "Any", *args)
    assert code == 0, err
    assert files(out) == {"a.mp4/meta.json": "output_meta", "a.mp4/t/0.jpg": "output_thumb"}
    assert keys(task, "Any", *args) == []
    code, _, err = run(tmp_path, capsys, task, "Any", *args[:-1], "finish.name=m")
    assert code == 2 and "'m' is not a declared output (declared: meta, thumb)" in err


@pytest.mark.slow
def test_torch_task_runs_on_the_torch_backbone_on_cpu(tmp_path):
    pytest.importorskip("torch")
    for i in range(5):
        write(tmp_path / "in" / f"d{i % 2}" / f"{i}.txt", "x" * (i + 1))
    task = task_file("templates_torch")
    out = tmp_path / "out"
    args = ["--backbone", "torch", "--device", "cpu", "--batch-size", "2", "--num-workers", "0",
            "--log-dir", tmp_path / "logs", "--mixin", f"input={tmp_path / 'in'}", f"output={out}"]  # fmt: skip
    done = run_dispatch(task, "Length", *args)
    assert done.returncode == 0, done.stderr
    assert files(out) == {f"d{i % 2}/{i}.txt.len": str(2 * (i + 1)) for i in range(5)}
    again = run_dispatch(task, "Length", *args)
    assert again.returncode == 0 and "nothing to do" in again.stderr
