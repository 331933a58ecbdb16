"""What the user typed is what runs (DESIGN invariant 12): a `str` value keeps its text on
the command line (verbatim), in YAML files (the scalar's source text), from Python (as
given) and through `--print-config` read back by `--cfg`. Non-`str` values keep YAML typing;
a value that cannot be kept is exit 2 naming it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO, backbone_params, dispatch_here, run_dispatch, task_file, tree, write_file
from hypothesis import given, settings
from hypothesis import strategies as st

import dispatcher
from dispatcher.config import layers as config
from dispatcher.config.layers import load_layers
from dispatcher.config.placeholders import MIXIN_PLACEHOLDER, Placeholder, fill
from dispatcher.errors import ErrorList, UsageError

HOSTILE = [
    ">", "|", "run #2", "#", "a\nb", "a: b", ": ", "*x", "&a", "!tag x", "@x", "%x", "`x", "[x",
    "[a, b]", "{a: 1}", "'q'", '"abc"', "0123", "1e3", "yes", "null", "~", " lead", "trail ",
    " ", "- a", "? x", "a\tb", "a\n\nb\n", "x=y", "éß 中文 🙂", "\\n", "- ",
]  # fmt: skip


def _echo(tmp_path: Path, *args: str, out: str = "out", cwd: Path | None = None):
    """The Echo task run from `cwd` with `args`; (process, the mixin it saw or None)."""
    task = task_file("config_text_echo")
    proc = dispatch_here(task, "Echo", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", f"out={tmp_path / out}", *args, cwd=cwd or tmp_path)  # fmt: skip
    result = tmp_path / out / "r.json"
    return proc, json.loads(result.read_text()) if result.exists() else None


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error")]


# --- the command line: the text after `=`, verbatim ---------------------------------------


def test_str_placeholders_and_str_dict_values_take_the_command_line_text_verbatim(tmp_path):
    items = [f"s.k{i}={v}" for i, v in enumerate(HOSTILE)]
    items += [f"config.c{i}={v}" for i, v in enumerate(HOSTILE)]
    proc, seen = _echo(tmp_path, "text=run #2", "note=null", *items)
    assert proc.returncode == 0, proc.stderr
    assert seen["text"] == "run #2" and seen["note"] == "null"
    assert [seen["s"][f"k{i}"] for i in range(len(HOSTILE))] == HOSTILE
    assert seen["config"] == {f"c{i}": v for i, v in enumerate(HOSTILE)}


def test_interpolation_is_the_one_exception_on_the_command_line(tmp_path):
    proc, seen = _echo(tmp_path, "text=a #${mixin.note}", "note=x > y", "s.k0=\\${kept}")
    assert proc.returncode == 0, proc.stderr
    assert seen["text"] == "a #x > y" and seen["s"]["k0"] == "${kept}"


RUNS = {
    "serial": ("wordcount.py", "WordCount", "text", ["--backbone", "serial"]),
    "mp": ("wordcount.py", "WordCount", "text", ["--backbone", "mp", "--num-process", "2"]),
    "torch": ("image_embed.py", "ImageEmbed", "images", ["--backbone", "torch", "--device", "cpu",
                                                        "--num-workers", "1"]),
    "devices": ("image_embed.py", "ImageEmbed", "images", ["--backbone", "torch", "--devices", "cpu,cpu",
                                                          "--num-workers", "1", "--batch-size", "2"]),
}  # fmt: skip


NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")


@pytest.mark.parametrize("engine", [*backbone_params(["serial", "mp", "torch"]),
                                    pytest.param("devices", marks=NEEDS_TORCH)])  # fmt: skip
def test_an_output_root_with_a_hash_is_that_folder_and_a_rerun_finds_it_done(tmp_path, engine):
    file, name, data, options = RUNS[engine]
    args = [*options, "--mixin", f"input={REPO / 'tasks' / 'data' / data}", "output=res #2"]
    task = REPO / "tasks" / file
    proc = run_dispatch(task, name, *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "res").exists()
    made = tree(tmp_path / "res #2")
    assert made and all(path.endswith(".json") for path in made)
    again = run_dispatch(task, name, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr and "all done" in again.stderr
    assert tree(tmp_path / "res #2") == made


def test_an_empty_value_is_no_value_and_other_types_keep_yaml_typing(tmp_path):
    proc, seen = _echo(tmp_path, "note=", "n=0x10", "any=1e3", "words=[0123, '#x', yes]")
    assert proc.returncode == 0, proc.stderr
    assert seen["note"] is None and seen["n"] == 16 and seen["any"] == 1000.0
    assert seen["words"] == ["0123", "#x", "yes"]


@pytest.mark.parametrize(
    "item, message",
    [
        ("n=[x", "mixin 'n': cannot read '[x' as YAML"),
        ("any=@x", "mixin 'any': cannot read '@x' as YAML"),
        ("text=", "mixin 'text': expected a string, got null"),
        ("s.k0=", "mixin 's.k0': expected a string, got null"),
    ],
)
def test_a_value_that_cannot_be_kept_is_exit_2_naming_it(tmp_path, item, message):
    proc, seen = _echo(tmp_path, item, "s.k1=@fine")
    assert proc.returncode == 2 and seen is None
    lines = _errors(proc)
    assert len(lines) == 1 and lines[0].startswith(f"dispatch: error: {message}"), proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


# --- YAML files: YAML syntax, a str gets the scalar's source text -----------------------


def test_yaml_files_keep_comments_quotes_and_the_source_text_of_str_scalars(tmp_path):
    cfg = write_file(
        tmp_path / "cfg.yaml",
        """
        mixin:
          text: run # a comment
          note: '#not a comment'
          n: 0x10
          any: 1e3
          s:
            k0: 0123
            k1: 1e3
            k2: yes
            k3: "a\\nb"
            k4: '>'
            k5: |
              block
              text
        """,
    )
    proc, seen = _echo(tmp_path, "--cfg", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert seen["text"] == "run" and seen["note"] == "#not a comment"
    assert seen["n"] == 16 and seen["any"] == 1000.0
    assert [seen["s"][f"k{i}"] for i in range(6)] == [
        "0123",
        "1e3",
        "yes",
        "a\nb",
        ">",
        "block\ntext\n",
    ]


def test_null_in_a_yaml_file_fills_only_an_optional_str(tmp_path):
    mixin_cfg = write_file(tmp_path / "m.yaml", "text: null\nnote: ~\n")
    proc, seen = _echo(tmp_path, "--mixin-cfg", str(mixin_cfg))
    assert proc.returncode == 2 and seen is None
    assert _errors(proc) == [
        f"dispatch: error: {mixin_cfg}:1: mixin 'text': expected a string, got null"
    ]
    write_file(mixin_cfg, "note: ~\ntext: ''\n")
    proc, seen = _echo(tmp_path, "--mixin-cfg", str(mixin_cfg))
    assert proc.returncode == 0, proc.stderr
    assert seen["note"] is None and seen["text"] == ""


def test_a_str_option_in_cfg_sections_is_the_scalars_text(tmp_path):
    cfg = write_file(tmp_path / "cfg.yaml", "task:\n  tag: 0123\nbackbone:\n  name: serial\n")
    proc, seen = _echo(tmp_path, "--cfg", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert seen["tag_option"] == "0123"
    printed = dispatch_here(task_file("config_text_echo"), "Echo", "--cfg", cfg, "--print-config",
                            "--mixin", "out=o", cwd=tmp_path)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "  tag: '0123'\n" in printed.stdout
    # A backbone's text option gets the text too, and checks it as it checks the command line's.
    write_file(cfg, "backbone:\n  name: serial\n  device: 0\n")
    proc, seen = _echo(tmp_path, "--cfg", str(cfg), out="out2")
    assert proc.returncode == 2 and seen is None
    assert _errors(proc) == [
        "dispatch: error: --device expects auto, cpu, mps, cuda[:N] or npu[:N], got '0'"
    ]


# --- --print-config, read back by --cfg, is the same run ---------------------------------


def test_print_config_read_back_by_cfg_gives_every_value_back(tmp_path):
    items = [f"s.k{i}={v}" for i, v in enumerate(HOSTILE)]
    items += [f"config.c{i}={v}" for i, v in enumerate(HOSTILE)]
    items += ["text=a ${mixin.note}", "note=\\${x}", "any='1e3'", "n=7", "words=[a, '0123']"]
    proc, direct = _echo(tmp_path, *items)
    assert proc.returncode == 0, proc.stderr
    task = task_file("config_text_echo")
    printed = dispatch_here(task, "Echo", "--print-config", "--mixin", f"out={tmp_path / 'again'}",
                            *items, cwd=tmp_path)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    saved = tmp_path / "elsewhere" / "run.yaml"
    saved.parent.mkdir()
    saved.write_text(printed.stdout)
    proc = run_dispatch("--cfg", saved, "--log-dir", tmp_path / "logs", cwd=saved.parent)
    assert proc.returncode == 0, proc.stderr
    replayed = json.loads((tmp_path / "again" / "r.json").read_text())
    assert replayed == direct and direct["any"] == "1e3" and direct["note"] == "${x}"


def _printed_wordcount(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(the folder a WordCount run over `input=data output=out` was printed in, the saved
    document, another folder with a `data/` of the same names and other words)."""
    here = tmp_path / "here"
    shutil.copytree(REPO / "tasks" / "data" / "text", here / "data")
    printed = dispatch_here(REPO / "tasks" / "wordcount.py", "WordCount", "--print-config",
                            "--mixin", "input=data", "output=out", cwd=here)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    saved = write_file(tmp_path / "saved" / "run.yaml", printed.stdout)
    elsewhere = tmp_path / "elsewhere"
    for path in (here / "data").rglob("*.txt"):
        write_file(elsewhere / "data" / path.relative_to(here / "data"), "other words\n")
    return here, saved, elsewhere


def test_a_printed_config_with_relative_paths_replays_from_anywhere_where_it_was_printed(tmp_path):
    here, saved, elsewhere = _printed_wordcount(tmp_path)
    direct = run_dispatch(REPO / "tasks" / "wordcount.py", "WordCount", "--backbone", "serial",
                          "--mixin", "input=data", f"output={tmp_path / 'direct'}", cwd=here)  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    # From another folder, by a relative path to the document, with a relative --log-dir:
    # the roots are the printed folder's, the command line's own paths are this folder's.
    proc = run_dispatch("--cfg", "../saved/run.yaml", "--backbone", "mp", "--log-dir", "logs",
                        cwd=elsewhere)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"dispatch: --cfg was printed in {here}: the run works there" in proc.stderr
    assert tree(here / "out") == tree(tmp_path / "direct")
    assert not (elsewhere / "out").exists() and list((elsewhere / "logs").rglob("run.json"))
    assert not (here / "logs").exists()
    # The values kept their text: the document printed again names the same roots.
    again = dispatch_here("--cfg", saved, "--print-config", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    assert again.stdout == saved.read_text()
    # Rerun from a third folder: nothing left to make.
    proc = run_dispatch("--cfg", saved, cwd=tmp_path)
    assert proc.returncode == 0 and "all done (3 found)" in proc.stderr, proc.stderr


def test_a_printed_config_whose_folder_is_gone_is_refused_before_any_work(tmp_path):
    here, saved, elsewhere = _printed_wordcount(tmp_path)
    shutil.rmtree(here)
    proc = dispatch_here("--cfg", saved, "--backbone", "serial", cwd=elsewhere)
    assert proc.returncode == 2 and not (elsewhere / "out").exists()
    assert _errors(proc) == [
        f"dispatch: error: --cfg was printed in {here}, which is not a folder here, so its "
        "relative paths name nothing: run where they name the same files, or delete its "
        "cwd: line"
    ]
    # Without its cwd: line, the document means this folder.
    lines = saved.read_text().splitlines(keepends=True)
    saved.write_text("".join(line for line in lines if not line.startswith("cwd:")))
    proc = dispatch_here("--cfg", saved, "--backbone", "serial", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert dict(json.loads((elsewhere / "out" / "fox.txt.json").read_text())["top"])["other"] == 1


def test_a_replay_from_python_works_where_it_was_printed_and_gives_the_folder_back(tmp_path):
    here, saved, elsewhere = _printed_wordcount(tmp_path)
    before = os.getcwd()
    os.chdir(elsewhere)
    try:
        result = dispatcher.run(f"{REPO / 'tasks' / 'wordcount.py'}:WordCount", cfg=saved,
                                backbone="serial", log_dir="logs")  # fmt: skip
        assert os.getcwd() == str(elsewhere)
    finally:
        os.chdir(before)
    assert result.exit_code == 0 and result.counts.succeeded == 3
    assert (here / "out" / "fox.txt.json").is_file() and (elsewhere / "logs").is_dir()


# --- Python: str values pass through untouched --------------------------------------------


def test_python_mixin_str_values_pass_through_untouched(tmp_path):
    task = task_file("config_text_echo")
    values = {"out": str(tmp_path / "out"), "text": "a\nb #c", "note": "null", "any": "0123",
              "config": {"a.b": ">", "c": "${x}"}, "s.k0": "|"}  # fmt: skip
    result = dispatcher.run((str(task), "Echo"), values, backbone="serial",
                            log_dir=tmp_path / "logs")  # fmt: skip
    assert result.exit_code == 0
    seen = json.loads((tmp_path / "out" / "r.json").read_text())
    assert (seen["text"], seen["note"], seen["any"]) == ("a\nb #c", "null", "0123")
    assert seen["config"] == {"a.b": ">", "c": "${x}"} and seen["s"]["k0"] == "|"


# --- operator packages: aiges config.* and ModelArts str parameters ----------------------


def test_aiges_config_values_are_the_command_line_text(tmp_path):
    op = task_file("config_aiges")
    rows = write_file(tmp_path / "in" / "rows.jsonl", '{"id": 1, "text": "x"}\n')
    out = tmp_path / "out"
    proc = dispatch_here(op, "Wrapper", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", f"input={rows}", f"output={out}", "config.prefix=>",
                         "config.bar=|", "config.tag=run #2", "config.lines=a\nb",
                         cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((out / "1" / "config").read_text())
    assert seen == {"prefix": ">", "bar": "|", "tag": "run #2", "lines": "a\nb"}


def test_a_modelarts_str_parameter_is_the_command_line_text(tmp_path):
    package = tmp_path / "pkg"
    program = package / "program_package"
    program.mkdir(parents=True)
    shutil.copy(task_file("config_modelarts_process"), program / "process.py")
    write_file(package / "operator.yaml", "arguments:\n  - {name: tag, type: str, default: t}\n")
    write_file(tmp_path / "in" / "r.jsonl", '{"i": 1}\n')
    out = tmp_path / "out"
    proc = dispatch_here(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", f"input={tmp_path / 'in'}", f"output={out}", "tag=a #b: >",
                         cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "r.jsonl").read_text())["tag"] == "a #b: >"


# --- the configuration layer --------------------------------------------------------------

DECLARED = {"x": Placeholder(str), "o": Placeholder(str | None, default="d"), "n": MIXIN_PLACEHOLDER,
            "m": Placeholder(dict[str, str], default={})}  # fmt: skip


def _fill(layers) -> tuple[dict, list[str]]:
    errors = ErrorList()
    value = fill(DECLARED, layers.mixin, errors, layers.mixin_text)
    return value, errors.messages


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("through_a_file", [False, True])
def test_load_layers_and_fill_keep_the_command_line_text(tmp_path, value, through_a_file):
    mixin_cfg = write_file(tmp_path / "m.yaml", "{}\n") if through_a_file else None
    items = [f"x={value}", f"o={value}", f"m.k={value}", "n=1"]
    layers = load_layers(None, str(mixin_cfg) if mixin_cfg else None, items)
    filled, errors = _fill(layers)
    assert errors == [] and (filled["x"], filled["o"], filled["m"]) == (value, value, {"k": value})


def test_an_unreadable_value_is_refused_only_where_yaml_must_read_it():
    layers = load_layers(None, None, ["x=[a", "n=[a"])
    _, errors = _fill(layers)
    assert len(errors) == 1 and errors[0].startswith("mixin 'n': cannot read '[a' as YAML: ")
    with pytest.raises(UsageError, match="cannot be parsed"):
        load_layers(None, None, ["x[0]=[a"])  # no placeholder to ask for a key like this


ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT.filter(lambda t: t != "" and "${" not in t))
def test_any_command_line_text_fills_a_str_placeholder_as_it_is(tmp_path_factory, text):
    plain = _fill(load_layers(None, None, [f"x={text}", f"m.k={text}", "n=1"]))
    assert plain[1] == [] and plain[0]["x"] == text and plain[0]["m"] == {"k": text}
    empty = tmp_path_factory.mktemp("cfg") / "empty.yaml"
    empty.write_text("")
    merged = _fill(load_layers(None, str(empty), [f"x={text}", f"m.k={text}", "n=1"]))
    assert merged == plain


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ANY_TEXT)


@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT, other=st.one_of(SCALARS, st.lists(SCALARS, max_size=3)), key=ANY_TEXT)
def test_print_config_then_cfg_gives_any_value_back(tmp_path_factory, text, other, key):
    document = {
        "task_file": "t.py",
        "task_class": "T",
        "mixin": {"x": text, "n": other, "m": {key: text}},
    }
    cfg = tmp_path_factory.mktemp("cfg") / "run.yaml"
    cfg.write_text(config.config_document(document), encoding="utf-8")
    layers = load_layers(str(cfg), None, [])
    filled, errors = _fill(layers)
    assert errors == []
    assert (filled["x"], filled["n"], filled["m"]) == (text, other, {key: text})
    assert repr(filled["n"]) == repr(other)


def test_print_config_refuses_a_value_it_cannot_write_back():
    with pytest.raises(UsageError, match=r"--print-config: mixin\.x cannot be written"):
        config.config_document({"mixin": {"x": object()}})


def test_a_command_line_value_with_a_hash_still_costs_no_omegaconf():
    import subprocess
    import sys

    code = ("import sys; from dispatcher.config.layers import load_layers; "
            "c = load_layers(None, None, ['output=res #2', 'input=/x']); "
            "print(repr(c.mixin_text['output']), 'omegaconf' in sys.modules)")  # fmt: skip
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split()[-1] == "False"


def test_declared_text_fields_of_a_mode_take_the_command_line_text_too():
    import dataclasses
    import pathlib

    @dataclasses.dataclass
    class Mode:
        root: pathlib.Path = pathlib.Path("x")
        token: str = "{shard}"
        flag: bool = False

    layers = load_layers(None, None, ["m.root=a #b", "m.token={part}"])
    errors = ErrorList()
    mode = fill({"m": Mode()}, layers.mixin, errors, layers.mixin_text)["m"]
    assert errors.messages == [] and (mode.root, mode.token) == (pathlib.Path("a #b"), "{part}")
    layers = load_layers(None, None, ["m.flag=[1]"])
    fill({"m": Mode()}, layers.mixin, errors, layers.mixin_text)
    assert errors.messages == ["mixin 'm.flag': expected a boolean, got [1]"]
