"""What a newcomer types first: help without a task, the version, typos with suggestions,
`--print-config` fed back to `--cfg`, the mode fields `-h` lists, extensions without a dot."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO, dispatch_here, run_dispatch, task_file, tree, write_file

import dispatcher

WORDCOUNT = REPO / "tasks" / "wordcount.py"
TEXT = REPO / "tasks" / "data" / "text"


@pytest.fixture
def template_task():
    return task_file("cli_templates")


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]


# --- help and version without a task -------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["-h"], ["--help"], ["-hk"]])
def test_without_a_task_help_is_the_dispatchers(args, tmp_path):
    proc = dispatch_here(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: dispatch")
    assert "--mixin-cfg FILE" in proc.stdout and "TASK_CLASS" in proc.stdout
    assert "--version" in proc.stdout
    assert proc.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_the_usage_line_wraps():
    proc = dispatch_here("-hk")
    head = proc.stdout.split("\n\n", 1)[0].splitlines()
    assert len(head) > 1, head
    assert all(len(line) <= 88 for line in head), head
    assert all(line.startswith(" " * len("usage: dispatch ")) for line in head[1:]), head
    assert all(line.count("[") == line.count("]") for line in head), head  # no option cut in two
    assert all(len(line) <= 100 for line in proc.stdout.splitlines())


def test_version_prints_the_version(tmp_path):
    proc = dispatch_here("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"shard-dispatch {dispatcher.__version__}\n"


def test_a_task_file_without_its_class_is_still_an_error(tmp_path):
    proc = dispatch_here(WORDCOUNT, cwd=tmp_path)
    assert proc.returncode == 2
    assert "TASK_FILE and TASK_CLASS are required" in proc.stderr
    assert len(_error_lines(proc)) == 1 and len(proc.stderr.splitlines()) == 1


# --- typos and misplaced values ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["{task}", "WordCount", "--froce"],
            "unrecognized option --froce (did you mean '--force'?) (see -hk)",
        ),
        (
            ["{task}", "WordCount", "--sahrd", "0/2"],
            "unrecognized option --sahrd (did you mean '--shard'?) (see -hk)",
        ),
        (
            ["--froce", "{task}", "WordCount"],
            "unrecognized option --froce (did you mean '--force'?) (see -hk)",
        ),
        (
            ["{task}", "WordCount", "--min-lenght", "2"],
            "unrecognized option --min-lenght (did you mean '--min-length'?) (see -h and -hb)",
        ),
        (
            ["{task}", "WordCount", "top=3"],
            "unexpected argument 'top=3' (did you mean --mixin top=3?)",
        ),
        (
            ["{task}", "WordCount", "--num-process", "two"],
            "argument --num-process: expected a positive integer, got 'two'",
        ),
        (
            ["{task}", "WordCount", "--num-process", "0"],
            "argument --num-process: expected a positive integer, got '0'",
        ),
        (
            ["{task}", "WordCount", "--timeout", "soon"],
            "argument --timeout: expected a number of seconds more than 0, got 'soon'",
        ),
    ],
)
def test_typos_get_a_suggestion_and_write_nothing(tmp_path, args, message):
    args = [a.format(task=WORDCOUNT) for a in args]
    out = tmp_path / "out"
    proc = dispatch_here(
        *args, "--backbone", "mp", "--mixin", f"input={TEXT}", f"output={out}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert f"dispatch: error: {message}" in _error_lines(proc), proc.stderr
    assert "invalid positive_int value" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bare_mixin_item_after_the_class_is_pointed_at_mixin(tmp_path):
    proc = dispatch_here(WORDCOUNT, "WordCount", "top=3", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        "dispatch: error: unexpected argument 'top=3' (did you mean --mixin top=3?)" in proc.stderr
    )


# --- --print-config given back to --cfg ----------------------------------------------------


def _printed(*args, cwd) -> str:
    proc = dispatch_here(*args, "--print-config", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, extra", [("serial", []), ("mp", ["--num-process", "2", "--retries", "1"])]
)
def test_print_config_given_to_cfg_reproduces_the_run(tmp_path, backbone, extra):
    out, logs = tmp_path / "out", tmp_path / "logs"
    run_a = [
        WORDCOUNT,
        "WordCount",
        "--backbone",
        backbone,
        *extra,
        "--min-length",
        "4",
        "--shard",
        "0/2",
        "--shard-mode",
        "index",
        "--force",
        "--log-dir",
        logs,
        "--mixin",
        f"input={TEXT}",
        f"output={out}",
        "top=3",
        "lowercase=false",
    ]
    printed = _printed(*run_a, cwd=tmp_path)
    conf = yaml.safe_load(printed)
    assert conf["backbone"]["name"] == backbone and conf["force"] is True
    cfg = tmp_path / "run.yaml"
    cfg.write_text(printed)

    # Only the file: the same configuration, backbone choice, shard and options included.
    assert _printed("--cfg", cfg, "--log-dir", logs, cwd=tmp_path) == printed
    assert run_dispatch(*run_a, cwd=tmp_path).returncode == 0
    made = tree(out)
    assert made and all(json.loads(v)["top"] for v in made.values())
    assert len(made) < len(list(TEXT.rglob("*.txt")))  # one shard of two
    for path in out.rglob("*.json"):
        path.unlink()
    proc = run_dispatch("--cfg", cfg, "--log-dir", logs, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == made
    records = [json.loads(p.read_text()) for p in logs.rglob("run.json")]
    assert len(records) == 2 and records[0]["config"] == records[1]["config"]


def test_the_command_line_wins_over_the_printed_file(tmp_path):
    out = tmp_path / "out"
    printed = _printed(
        WORDCOUNT,
        "WordCount",
        "--backbone",
        "serial",
        "--shard",
        "1/3",
        "--mixin",
        f"input={TEXT}",
        f"output={out}",
        cwd=tmp_path,
    )
    cfg = write_file(tmp_path / "run.yaml", printed)
    conf = yaml.safe_load(
        _printed(
            "--cfg", cfg, "--backbone", "mp", "--shard", "0/2", "--mixin", "top=1", cwd=tmp_path
        )
    )
    assert conf["backbone"]["name"] == "mp"
    assert conf["shard"] == "hash 0/2"
    assert conf["mixin"]["top"] == 1 and conf["mixin"]["input"] == str(TEXT)
    # --backbone auto said on the command line is a choice too.
    conf = yaml.safe_load(_printed("--cfg", cfg, "--backbone", "auto", cwd=tmp_path))
    assert conf["backbone"]["name"] == "mp"
    # Task options follow the task's place, which the command line may name again.
    conf = yaml.safe_load(
        _printed(WORDCOUNT, "WordCount", "--cfg", cfg, "--min-length", "5", cwd=tmp_path)
    )
    assert conf["task"]["min_length"] == 5 and conf["backbone"]["name"] == "serial"
    proc = dispatch_here("--cfg", cfg, "--min-length", "5", cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "dispatch: error: option --min-length comes before TASK_FILE TASK_CLASS; "
        "task and backbone options go after them"
    ]


def test_a_printed_template_configuration_round_trips(tmp_path, template_task):
    data = write_file(tmp_path / "data" / "a.txt", "abc").parent
    write_file(data / ".hidden.txt", "x")
    out = tmp_path / "out"
    printed = _printed(
        template_task,
        "Sizes",
        "--backbone",
        "serial",
        "--mixin",
        f"input={data}",
        f"output={out}",
        "input_mode.hidden=true",
        "input_mode.exts=[txt]",
        "output_mode.ext=js",
        cwd=tmp_path,
    )
    cfg = write_file(tmp_path / "run.yaml", printed)
    assert _printed("--cfg", cfg, cwd=tmp_path) == printed
    assert dispatch_here("--cfg", cfg, cwd=tmp_path).returncode == 0
    assert sorted(tree(out)) == [".hidden.txt.js", "a.txt.js"]


def test_cfg_refuses_unknown_top_level_keys_with_a_suggestion(tmp_path):
    cfg = write_file(tmp_path / "run.yaml", f"task_fiel: {WORDCOUNT}\ntask_class: WordCount\n")
    proc = dispatch_here("--cfg", cfg, cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown section 'task_fiel' (did you mean 'task_file'?)" in proc.stderr
    cfg = write_file(tmp_path / "bad.yaml", "force: maybe\nshard: x\nbackbone: {name: 3}\n")
    proc = dispatch_here(WORDCOUNT, "WordCount", "--cfg", cfg, cwd=tmp_path)
    assert proc.returncode == 2
    errors = _error_lines(proc)
    assert any("force: expected true or false" in e for e in errors), errors
    assert any("shard: expected I/N" in e for e in errors), errors
    assert any("backbone.name: expected a backbone name" in e for e in errors), errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "run.yaml"]


# --- -h lists mode fields ------------------------------------------------------------------


def test_h_lists_the_mode_fields_with_their_values(template_task):
    proc = dispatch_here(template_task, "Sizes", "--mixin", "input_mode.hidden=true", "-h")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "input_mode (InputByExtensions)\n      Every file under the input root" in text
    assert "input_mode.exts = ['.txt']" in text
    assert "input_mode.follow_links = False" in text
    assert "output_mode.ext (str, default 'json')" in text
    assert "input (str, required)\n      input root" in text


def test_h_says_input_is_a_jsonl_file_where_it_is(template_task):
    proc = dispatch_here(template_task, "Listed", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "input (str, required)\n      input JSONL file" in proc.stdout
    assert "input_mode.key = 'path'" in proc.stdout


# --- OutputWithExtension without a dot ------------------------------------------------------


def test_an_extension_without_a_dot_means_with_one(tmp_path, template_task):
    data = write_file(tmp_path / "data" / "doc1.txt", "hello").parent
    out = tmp_path / "out"
    args = (
        template_task,
        "Sizes",
        "--backbone",
        "serial",
        "--mixin",
        f"input={data}",
        f"output={out}",
    )
    proc = dispatch_here(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(tree(out)) == ["doc1.txt.json"]
    again = dispatch_here(*args, cwd=tmp_path)  # the done check looks for the same name
    assert again.returncode == 0 and "nothing to do" in again.stderr
    proc = dispatch_here(*args, "output_mode.ext=_meta.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(tree(out)) == ["doc1.txt.json", "doc1.txt_meta.json"]


def test_the_extension_is_normalised_once_for_every_use():
    from templates import OutputWithExtension
    from templates.output_modes import FinishWhenAllExist

    mode = OutputWithExtension(ext="json")
    assert mode.ext == ".json" and OutputWithExtension("tar.gz").ext == ".tar.gz"
    assert mode.done_paths(FinishWhenAllExist(), "a/b.txt") == ["a/b.txt.json"]
    assert OutputWithExtension("-thumb.jpg").ext == "-thumb.jpg"
    assert OutputWithExtension().ext == ".json"
    assert OutputWithExtension(ext=5).problems("output_mode")  # still refused, not changed
