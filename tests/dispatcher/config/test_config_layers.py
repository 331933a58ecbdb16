"""Configuration layers, placeholders in any container, coercion and validation."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import shutil

import pytest
from conftest import dispatch_here, run_dispatch, task_file, write_file
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.config.layers import apply_option_defaults, load_layers
from dispatcher.config.placeholders import MIXIN_PLACEHOLDER, Placeholder, describe, fill
from dispatcher.errors import ErrorList, UsageError


@dataclasses.dataclass
class Mode:
    exts: object = dataclasses.field(
        default_factory=lambda: Placeholder(list[str], default=[".mp4"])
    )
    depth: object = 1


class PlainObject:
    def __init__(self):
        self.root = Placeholder(pathlib.Path, help="where")
        self.flag = False


def filled(declaration, overrides):
    errors = ErrorList()
    value = fill(declaration, overrides, errors)
    return value, errors.messages


def test_three_layers_priority(tmp_path):
    cfg = write_file(tmp_path / "cfg.yaml", "mixin:\n  a: cfg\n  b: cfg\n  c: cfg\n")
    mixin_cfg = write_file(tmp_path / "mixin.yaml", "b: mixin_cfg\nc: mixin_cfg\n")
    layers = load_layers(str(cfg), str(mixin_cfg), ["c=cli"])
    assert layers.mixin == {"a": "cfg", "b": "mixin_cfg", "c": "cli"}


def test_mixin_values_are_yaml_typed_and_dotted():
    layers = load_layers(None, None, ["n=3", "exts=[.mp4,.mkv]", "x=null", "a.b.c=true", "s='007'"])
    assert layers.mixin == {
        "n": 3,
        "exts": [".mp4", ".mkv"],
        "x": None,
        "a": {"b": {"c": True}},
        "s": "007",
    }


def test_interpolation_with_config_directory(tmp_path):
    cfg = write_file(
        tmp_path / "conf" / "run.yaml",
        """
        mixin:
          input: ${cfg_dir}/data
          output: ${mixin.input}_out
    """,
    )
    layers = load_layers(str(cfg), None, [])
    assert layers.mixin["input"] == f"{tmp_path}/conf/data"
    assert layers.mixin["output"] == f"{tmp_path}/conf/data_out"


def test_bad_interpolation_is_a_usage_error(tmp_path):
    cfg = write_file(tmp_path / "c.yaml", "mixin:\n  a: ${nowhere.x}\n")
    with pytest.raises(UsageError, match="configuration error"):
        load_layers(str(cfg), None, [])


def test_placeholders_inside_dataclasses_objects_dicts_and_lists():
    declaration = {
        "mode": Mode(),
        "obj": PlainObject(),
        "list": [Placeholder(int, default=1), {"inner": MIXIN_PLACEHOLDER}],
        "fixed": 10,
    }
    value, errors = filled(
        declaration,
        {
            "mode": {"exts": [".MKV"]},
            "obj": {"root": "/x"},
            "list": {"1": {"inner": "here"}},
            "fixed": "12",
        },
    )
    assert errors == []
    assert value["mode"].exts == [".MKV"] and value["mode"].depth == 1
    assert value["obj"].root == pathlib.Path("/x") and value["obj"].flag is False
    assert value["list"] == [1, {"inner": "here"}]
    assert value["fixed"] == 12
    assert value.mode.exts == [".MKV"]  # attribute access on filled dicts
    assert isinstance(declaration["mode"].exts, Placeholder)  # the declaration is untouched


def test_unfilled_unknown_type_and_choice_errors_together():
    declaration = {
        "a": MIXIN_PLACEHOLDER,
        "b": Placeholder(str, help="the b"),
        "soft_shard": {"shard_idx": 0, "shard_num": 1},
        "c": Placeholder(float, default=1.0),
        "d": Placeholder(str, default="x", choices=["x", "y"]),
    }
    _, errors = filled(
        declaration,
        {"soft_shard": {"shard_nun": 2}, "sof_shard": {"shard_num": 2}, "c": "fast", "d": "z"},
    )
    assert "unfilled placeholder 'a' (set it with --mixin a=...)" in errors
    assert "unfilled placeholder 'b': the b (set it with --mixin b=...)" in errors
    assert (
        "unknown mixin key 'soft_shard.shard_nun' (did you mean 'soft_shard.shard_num'?)" in errors
    )
    assert (
        "unknown mixin key 'sof_shard.shard_num' (did you mean 'soft_shard.shard_num'?)" in errors
    )
    assert "mixin 'c': expected a number, got 'fast'" in errors
    assert "mixin 'd': 'z' is not one of ['x', 'y']" in errors
    assert len(errors) == 6


@pytest.mark.parametrize(
    "tp, given, expected",
    [
        (int, "5", 5),
        (float, 3, 3.0),
        (bool, "yes", True),
        (bool, "false", False),
        (str, 7, "7"),
        (list[int], ["1", 2], [1, 2]),
        (dict[str, int], {"a": "1"}, {"a": 1}),
        (pathlib.Path, "a/b", pathlib.Path("a/b")),
        (int | None, None, None),
    ],
)
def test_type_coercion(tp, given, expected):
    value, errors = filled({"x": Placeholder(tp)}, {"x": given})
    assert errors == [] and value["x"] == expected


@pytest.mark.parametrize(
    "tp, given", [(int, "1.5"), (int, True), (bool, "maybe"), (list, "a"), (dict, [1])]
)
def test_type_violations(tp, given):
    _, errors = filled({"x": Placeholder(tp)}, {"x": given})
    assert len(errors) == 1 and errors[0].startswith("mixin 'x': ")


def test_defaults_and_describe():
    declaration = {"n": Placeholder(int, default=3, help="count"), "o": MIXIN_PLACEHOLDER}
    value, errors = filled(declaration, {"o": 1})
    assert value == {"n": 3, "o": 1} and errors == []
    assert describe(declaration) == [
        ("n", "int", "default 3", "count"),
        ("o", "any", "required", ""),
    ]


def test_open_empty_dict_accepts_any_keys():
    value, errors = filled({"extra": {}}, {"extra": {"anything": 1}})
    assert errors == [] and value["extra"] == {"anything": 1}


def _parser():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--quiet", action="store_false", dest="loud")
    parser.add_argument("--exts", nargs="+", default=[".a"])
    parser.add_argument("--tag", action="append")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--mode", choices=["a", "b"], default="a")
    parser.add_argument("--needed", required=True)
    return parser


def test_cfg_sections_become_option_defaults_with_flags_and_lists():
    parser, errors = _parser(), ErrorList()
    apply_option_defaults(
        parser,
        parser._actions,
        {
            "verbose": True,
            "loud": False,
            "exts": [".x", ".y"],
            "tag": ["t1", "t2"],
            "batch-size": "4",
            "needed": "yes",
        },
        "task",
        errors,
    )
    assert errors.messages == []
    ns = parser.parse_args([])
    assert (ns.verbose, ns.loud, ns.exts, ns.tag, ns.batch_size, ns.needed) == (
        True,
        False,
        [".x", ".y"],
        ["t1", "t2"],
        4,
        "yes",
    )
    assert parser.parse_args(["--batch-size", "9"]).batch_size == 9  # the command line still wins


def test_cfg_option_errors():
    parser, errors = _parser(), ErrorList()
    apply_option_defaults(
        parser,
        parser._actions,
        {"verbos": True, "verbose": "yes", "mode": "c", "batch_size": "x"},
        "task",
        errors,
    )
    assert errors.messages[0] == "--cfg task.verbos: no such task option (did you mean 'verbose'?)"
    assert "--cfg task.verbose: expected true or false" in errors.messages[1]
    assert "--cfg task.mode: 'c' is not one of ['a', 'b']" in errors.messages[2]
    assert "--cfg task.batch_size: invalid value 'x'" in errors.messages[3]


def test_cfg_end_to_end_booleans_lists_and_layers(tmp_path):
    task = task_file("config_layers")
    cfg = write_file(
        tmp_path / "cfg.yaml",
        """
        task:
          loud: true
          words: [a, b]
        mixin:
          out: ${cfg_dir}/out
          who: cfg
          n: 1
    """,
    )
    mixin_cfg = write_file(tmp_path / "m.yaml", "who: mixin-cfg\nn: 2\n")
    proc = dispatch_here(
        task,
        "T",
        "--backbone",
        "serial",
        "--cfg",
        cfg,
        "--mixin-cfg",
        mixin_cfg,
        "--mixin",
        "n=3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads((tmp_path / "out" / "r.json").read_text()) == {
        "loud": True,
        "words": ["a", "b"],
        "who": "mixin-cfg",
        "n": 3,
    }


def test_two_task_files_with_the_same_name_do_not_collide(tmp_path):
    for name in ("one", "two"):
        write_file(tmp_path / name / "helper.py", f"WHO = {name!r}\n")
        shutil.copy(task_file("config_beside_helper"), tmp_path / name / "task.py")
    from dispatcher.loader import load_task_class

    a = load_task_class(str(tmp_path / "one" / "task.py"), "T")
    b = load_task_class(str(tmp_path / "two" / "task.py"), "T")
    assert a is not b and a.__module__ != b.__module__
    for name in ("one", "two"):
        proc = run_dispatch(tmp_path / name / "task.py", "T", "--backbone", "serial", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        who, module, same = (tmp_path / name / "out" / "who.txt").read_text().split()
        assert who == name and module.startswith("_dispatch_task_task_") and same == "True"


def test_sibling_module_cannot_shadow_the_dispatcher(tmp_path):
    write_file(tmp_path / "dispatcher.py", "raise RuntimeError('shadowed!')\n")
    write_file(tmp_path / "templates.py", "raise RuntimeError('shadowed!')\n")
    task = shutil.copy(task_file("config_plain"), tmp_path / "task.py")
    proc = run_dispatch(task, "T", "--backbone", "serial", cwd=tmp_path / "..")
    assert proc.returncode == 0, proc.stderr


VALUE_TEXTS = st.one_of(
    st.sampled_from(
        [
            "1e3",
            "1e-3",
            "-2.5E+4",
            "1.5",
            ".5",
            "-.5",
            "+1",
            "007",
            "0x1F",
            "0o17",
            "1_000",
            "12:30",
            ".inf",
            "-.Inf",
            ".nan",
            "yes",
            "no",
            "on",
            "off",
            "True",
            "null",
            "~",
            "",
            "2024-01-01",
            "2024-01-01 10:00:00",
            "[.mp4,.MKV]",
            "[1, 2.5, x]",
            "{a: 1, b: [2]}",
            "'quoted'",
            '"007"',
            "a b",
            "x=y",
            "/data/raw",
            "s3://bucket/key",
            "#c",
            "- a",
        ]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet="abc019._-/", max_size=8),
    st.from_regex(r"[A-Za-z_/~.<=-][A-Za-z0-9_./-]{0,7}", fullmatch=True),  # words, paths, Yes, off
)
KEYS_ = st.lists(
    st.from_regex(r"[a-z_][a-z0-9_-]{0,5}(\.[a-z0-9_]{1,4}){0,2}", fullmatch=True),
    min_size=1,
    max_size=4,
    unique=True,
)


@settings(max_examples=300, deadline=None)
@given(keys=KEYS_, values=st.lists(VALUE_TEXTS, min_size=4, max_size=4))
def test_plain_mixin_items_are_typed_exactly_as_omegaconf_types_them(keys, values):
    from dispatcher.config import dotlist

    items = [f"{k}={v}" for k, v in zip(keys, values, strict=False)]
    if not dotlist.is_plain_dotlist(items):
        return  # conflicting keys go through OmegaConf itself
    plain_errors, omega_errors = ErrorList(), ErrorList()
    plain = dotlist.plain_dotlist(items)  # a value YAML cannot read is its text, no error
    omega = dotlist.omegaconf_dotlist(items, omega_errors)
    assert bool(plain_errors) == bool(omega_errors), (
        items,
        plain_errors.messages,
        omega_errors.messages,
    )
    if not plain_errors:
        assert plain == omega and repr(plain) == repr(omega), items


@settings(max_examples=500, deadline=None)
@given(text=st.from_regex(r"[A-Za-z0-9_/~.<=+-][A-Za-z0-9_./:# -]{0,7}", fullmatch=True))
def test_a_value_read_as_its_own_text_is_what_yaml_reads_under_both_loaders(text):
    import yaml

    from dispatcher.config import values

    if values.is_own_text(text):
        for kind in (values.TYPED, values.TEXT):
            assert yaml.load(text, Loader=values.loader(kind)) == text, (text, kind)


def _layers_in_a_fresh_interpreter(items, module):
    """The mixin `load_layers` makes of `items` in a new interpreter, and whether `module`
    was imported on the way (printed as one line)."""
    import subprocess
    import sys

    code = (
        "import sys; from dispatcher.config.layers import load_layers; "
        f"c = load_layers(None, None, {items!r}); print(c.mixin, {module!r} in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_a_command_line_of_paths_and_words_does_not_import_yaml():
    out = _layers_in_a_fresh_interpreter(["input=/data/raw", "output=out/x", "case=lower"], "yaml")
    assert out == "{'input': '/data/raw', 'output': 'out/x', 'case': 'lower'} False"


def test_a_plain_mixin_command_line_does_not_import_omegaconf():
    out = _layers_in_a_fresh_interpreter(["input=/x", "n=1e3", "a.b=[1,2]"], "omegaconf")
    assert out == "{'input': '/x', 'n': 1000.0, 'a': {'b': [1, 2]}} False"
    out = _layers_in_a_fresh_interpreter(["input=/x", "n=1e3", "a.b=${mixin.input}"], "omegaconf")
    assert out == "{'input': '/x', 'n': 1000.0, 'a': {'b': '/x'}} True"


_REFUSED = object()


def _filled_str_or_refused(mixin_cfg, items):
    """`_filled_str` of the layers, or (_REFUSED, messages) when they are refused."""
    try:
        return _filled_str(load_layers(None, mixin_cfg, items))
    except UsageError as exc:
        return (_REFUSED, exc.messages)


def _filled_str(layers):
    errors = ErrorList()
    value = fill(
        {"x": Placeholder(str), "n": MIXIN_PLACEHOLDER}, layers.mixin, errors, layers.mixin_text
    )
    return (value["x"], value["n"]) if not errors else errors.messages


@settings(max_examples=200, deadline=None)
@given(value=VALUE_TEXTS)
def test_a_str_placeholder_takes_the_typed_text_on_every_path(tmp_path_factory, value):
    """`--mixin x=V` through the plain loader and through OmegaConf (as when a file is
    merged) fill a `str` placeholder alike: the text after `=`, verbatim (`0123`, `'q'`,
    `[a, b]`, `#c` stay as typed); an empty value is no value, refused. An untyped
    placeholder still gets the YAML value, or is refused where YAML cannot read V."""
    from omegaconf import OmegaConf

    empty = tmp_path_factory.mktemp("cfg") / "empty.yaml"
    empty.write_text("")
    items = [f"x={value}", f"n={value}"]
    plain = _filled_str_or_refused(None, items)
    merged = _filled_str_or_refused(str(empty), items)
    assert repr(plain) == repr(merged), (value, plain, merged)
    if value == "":
        assert plain == ["mixin 'x': expected a string, got null"]
        return
    try:
        typed = OmegaConf.to_container(OmegaConf.from_dotlist([f"n={value}"]))["n"]
    except Exception:
        assert len(plain) == 1 and plain[0].startswith(f"mixin 'n': cannot read {value!r} as YAML")
        return
    assert repr(plain) == repr((value, typed)), value


@pytest.mark.parametrize(
    "text", ["0123", "007", "0x10", "1e3", "yes", "12:30", "-.Inf", "2024-01-01 10:00:00"]
)
def test_a_str_placeholder_keeps_text_from_yaml_files(tmp_path, text):
    cfg = write_file(tmp_path / "cfg.yaml", f"mixin:\n  x: {text}\n  n: {text}\n")
    mixin_cfg = write_file(tmp_path / "m.yaml", f"x: {text}\nn: '{text}'\n")
    x, _ = _filled_str(load_layers(str(cfg), None, []))
    assert x == text
    assert _filled_str(load_layers(None, str(mixin_cfg), [])) == (text, text)


@pytest.mark.parametrize(
    "tp, given, text, expected",
    [
        (str, 83, "0123", "0123"),
        (str, True, "yes", "yes"),
        (str, 1000.0, "1e3", "1e3"),
        (str, "007", "007", "007"),
        (list[str], [7, "a"], ["007", "a"], ["007", "a"]),
        (dict[str, str], {"k": 16}, {"k": "0x10"}, {"k": "0x10"}),
        (str | None, None, None, None),
        (pathlib.Path, 83, "0123", pathlib.Path("0123")),
        (int, 83, "0123", 83),
    ],
)
def test_coercion_with_the_typed_text(tp, given, text, expected):
    errors = ErrorList()
    value = fill({"x": Placeholder(tp)}, {"x": given}, errors, {"x": text})
    assert errors.messages == [] and value["x"] == expected


@pytest.mark.parametrize(
    "tp, message",
    [
        (str, "expected a string, got null"),
        (int, "expected an integer, got null"),
        (list[str], "expected a list, got null"),
        (float, "expected a number, got null"),
    ],
)
def test_null_is_refused_unless_the_type_is_optional(tp, message):
    _, errors = filled({"x": Placeholder(tp)}, {"x": None})
    assert errors == [f"mixin 'x': {message}"]
    value, errors = filled({"x": Placeholder(tp, default=None)}, {"x": None})
    assert errors == [] and value["x"] is None
