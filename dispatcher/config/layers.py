"""Layered configuration: `--cfg` < `--mixin-cfg` < `--mixin k=v`, merged with OmegaConf.

`--cfg` has three sections: `task:` and `backbone:` become command-line options (their
values act as option defaults, so the command line still wins), `mixin:` is the lowest
layer of the mixin. It may also name the run itself, as `--print-config` writes it:
`task_file`, `task_class`, `shard` and `force` at the top, and the backbone's `name`
(with its `options:`) in `backbone:`; what the command line says wins. `${...}` interpolation is resolved across the whole document, with
`${cfg_dir}` (and `${mixin_cfg_dir}`) naming the directory of the config file. A command
line with only plain `--mixin k=v` items has nothing to merge or interpolate, and is read
without importing OmegaConf (it costs more than the rest of a rerun's start-up).

What the user typed is what runs: each layer is read twice, YAML-typed (`mixin`) and as
typed (`mixin_text`), and the declared type picks. A `str` placeholder takes a `--mixin`
value's text after `=` verbatim (`#`, `>`, `|`, quotes and newlines kept; `${...}` still
resolved), and a YAML file scalar's source text (`tag: 0123` is "0123"); any other type
takes the YAML value. `config_document` writes `--print-config`'s YAML so that `--cfg`
reads every value back as it was.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dispatcher.config.placeholders import MISSING, CommandLineText
from dispatcher.errors import ErrorList, UsageError, did_you_mean

CFG_SECTIONS = ("task", "backbone", "mixin")
RUN_KEYS = ("task_file", "task_class", "cwd", "shard", "force")

if TYPE_CHECKING:
    import yaml


@dataclass
class LayeredConfig:
    """The merged, interpolated configuration, before it meets the task's declaration."""

    task: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    mixin: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    """Run settings the file names: task_file, task_class, cwd (where it was printed),
    backbone, shard, shard_mode, force."""
    option_text: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The `task` and `backbone` sections with each scalar as its source text, for
    options that take text (`tag: 0123` is "0123" for an option without a type)."""
    mixin_text: dict[str, Any] = field(default_factory=dict)
    """`mixin` as it was typed: a YAML file's scalars as their source text (`0123`, not
    83), a `--mixin` value as a `CommandLineText` (the text after `=`). A `str`
    placeholder takes the text, any other type the YAML value."""


def _read_yaml(path: str, what: str, errors: ErrorList, kind: str) -> dict[str, Any]:
    """A YAML mapping; the loader `kind` types its scalars (as OmegaConf does, or as text)."""
    import yaml

    if not os.path.isfile(path):
        errors.add(f"{what} file not found: {path}")
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_loader(kind))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        errors.add(f"malformed YAML in {what} {where}: {problem}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.add(f"{what} {path} must hold a mapping at its top level, not {type(data).__name__}")
        return {}
    return data


def _valid_mixin_items(items: list[str], errors: ErrorList) -> list[str]:
    good = []
    for item in items:
        if "=" not in item:
            errors.add(f"--mixin item '{item}' has no '=' (expected KEY=VALUE)")
        elif not item.split("=", 1)[0].strip():
            errors.add(f"--mixin item '{item}' has an empty key")
        else:
            good.append(item)
    return good


def _omegaconf_dotlist(
    items: list[str], errors: ErrorList, problems: dict[int, str] | None = None
) -> dict[str, Any]:
    """The `--mixin` items merged as OmegaConf merges them, each value YAML-typed; a value
    YAML cannot read is kept as its text, with why in `problems` (by item index)."""
    from omegaconf import OmegaConf

    merged: dict[str, Any] = {}
    for index, item in enumerate(items):
        try:
            conf = OmegaConf.from_dotlist([item])
        except Exception as exc:
            key, text = item.split("=", 1)
            try:  # the key is fine, the value is not: a `str` may still take its text
                conf = OmegaConf.create({})
                OmegaConf.update(conf, key, text, merge=True)
            except Exception:
                errors.add(f"--mixin item '{item}' cannot be parsed: {str(exc).splitlines()[0]}")
                continue
            _, problem = _typed_value(text)
            if problems is not None:
                problems[index] = problem or str(exc).splitlines()[0]
        merged = OmegaConf.to_container(OmegaConf.merge(merged, conf), resolve=False)  # type: ignore[assignment]
    return merged


# --- the common case without OmegaConf ---------------------------------------------------
# Importing OmegaConf costs more than the rest of a rerun's start-up. With no file to merge,
# no interpolation, and distinct plain dotted keys, a `--mixin` list is only nested keys
# and YAML values, which this loader types exactly as OmegaConf's does (1e3 is a float, a
# date stays a string); tests compare the two on generated items.

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_YAML_FLOAT = re.compile(  # YAML 1.2 floats: `1e3` and `1_000.5` are numbers
    r"""^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


# The two loaders, built on first use: a command line of plain words and paths never
# imports YAML (`_is_own_text`).
TYPED, TEXT = "typed", "text"


@functools.cache
def _loader(kind: str) -> type[yaml.SafeLoader]:
    """`typed`: types a `--mixin` value, or a YAML file's, the way OmegaConf's YAML loader
    does. `text`: reads every plain scalar as the text it was written as (only `null`,
    `~` and an empty value stay None), so the declared type, not YAML, decides what
    `0123` is."""
    import yaml

    if kind == TYPED:
        loader = type("_MixinValueLoader", (yaml.SafeLoader,), {})
        loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
        keep = lambda tag: tag != "tag:yaml.org,2002:timestamp"  # noqa: E731
    else:
        loader = type("_TextLoader", (yaml.SafeLoader,), {})
        keep = lambda tag: tag == "tag:yaml.org,2002:null"  # noqa: E731
    loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if keep(tag)]
        for first, resolvers in loader.yaml_implicit_resolvers.items()
    }
    return loader


_OWN_TEXT = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_KEYWORDS = frozenset(
    spelling
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for spelling in (word, word.capitalize(), word.upper())
)
"""Plain scalars YAML reads as text under either loader: no indicator, space, `:` or `#`,
a first character that starts no number, date or `~`, and not one of the words of
YAML 1.1's booleans and null. Paths and words, read without importing YAML."""


def _is_own_text(text: str) -> bool:
    return _OWN_TEXT.fullmatch(text) is not None and text not in _KEYWORDS


def _load_value(text: str, kind: str) -> Any:
    """One `--mixin` value, as the loader `kind` types it (an empty value is None)."""
    if _is_own_text(text):
        return text
    if not text.strip():
        return None
    import yaml

    try:
        value = yaml.load(text, Loader=_loader(kind))
    except yaml.YAMLError as exc:
        raise ValueError(getattr(exc, "problem", None) or str(exc).splitlines()[0]) from None
    if not _is_plain_data(value):
        raise ValueError(f"YAML reads it as {type(value).__name__}, which no placeholder takes")
    return value


def _is_plain_data(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, (str, int, float)) and _is_plain_data(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_data(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _typed_value(text: str) -> tuple[Any, str | None]:
    """A `--mixin` value as YAML types it, for any placeholder but a `str`; where YAML
    cannot read it, the text itself and why (a `str` takes it, anything else refuses it)."""
    try:
        return _load_value(text, TYPED), None
    except ValueError as exc:
        return text, str(exc)


def _command_line_text(text: str, value: Any, problem: str | None) -> CommandLineText | None:
    """What the text tree holds for one `--mixin` value: the text as typed, with the source
    text of each scalar when YAML reads it as a list or mapping. An empty value is no value
    (None): an unset shell variable in `output=$OUT` is refused, not the working directory."""
    if text == "":
        return None
    elements: Any = MISSING
    if isinstance(value, (list, dict)):
        try:
            elements = _load_value(text, TEXT)
        except ValueError:
            elements = MISSING
    return CommandLineText(text, elements, problem)


def _text_dotlist(items: list[str]) -> dict[str, Any]:
    """The `--mixin` items merged as `_omegaconf_dotlist` merges them, each value the text
    after `=` (OmegaConf resolves its `${...}`, the one exception to verbatim); a list or
    mapping as the source text of its scalars, so both passes merge alike."""
    from omegaconf import OmegaConf

    merged: dict[str, Any] = {}
    for item in items:
        key, text = item.split("=", 1)
        conf = OmegaConf.create({})
        try:
            parsed = _typed_value(text)[1] is None and _load_value(text, TEXT)
        except ValueError:
            parsed = None
        if isinstance(parsed, (list, dict)):
            OmegaConf.update(conf, key, parsed, merge=True)
        else:
            OmegaConf.update(conf, key, text if text != "" else None, merge=True)
        merged = OmegaConf.to_container(OmegaConf.merge(merged, conf), resolve=False)  # type: ignore[assignment]
    return merged


def _mark_command_line(
    texts: dict[str, Any], typed: dict[str, Any], items: list[str], problems: dict[int, str]
) -> None:
    """Each `--mixin` item still in effect gets its `CommandLineText` in `texts` (merged and
    resolved as `typed` is): the last item of a key wins; a list or mapping only while no
    other layer merged into it."""
    seen: set[str] = set()
    for index in reversed(range(len(items))):
        key, text = items[index].split("=", 1)
        if key in seen:
            continue
        seen.add(key)
        problem = problems.get(index)
        if not _PLAIN_KEY.fullmatch(key):
            if problem is not None:
                raise UsageError(f"--mixin item '{items[index]}' cannot be parsed: {problem}")
            continue
        *parents, last = key.split(".")
        node, twin = texts, typed
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            twin = twin.get(part) if isinstance(twin, dict) else None
        if not isinstance(node, dict) or not isinstance(twin, dict):
            continue
        leaf, value = node.get(last), twin.get(last, MISSING)
        if isinstance(leaf, str):
            problem = problem if value == leaf else None
            node[last] = CommandLineText(leaf, MISSING, problem)
        elif isinstance(leaf, (list, dict)) and value == _typed_value(text)[0]:
            node[last] = CommandLineText(text, leaf)


def _is_plain_dotlist(items: list[str]) -> bool:
    keys = [item.split("=", 1)[0] for item in items]
    if any(
        "${" in item.split("=", 1)[1] or not _PLAIN_KEY.fullmatch(k)
        for item, k in zip(items, keys, strict=True)
    ):
        return False
    prefixes = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    return len(set(keys)) == len(keys) and not prefixes & set(keys)


def _plain_dotlist(items: list[str], kind: str = TYPED) -> dict[str, Any]:
    """`kind` TYPED: the YAML values (a value YAML cannot read is its text); TEXT: the
    command line's texts (`CommandLineText`). Keys are plain and distinct."""
    tree: dict[str, Any] = {}
    for item in items:
        key, text = item.split("=", 1)
        value, problem = _typed_value(text)
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value if kind == TYPED else _command_line_text(text, value, problem)
    return tree


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    """Python's placeholder values with top-level dotted keys (`"a.b": 1`) as nested ones;
    keys inside a value are the value's own (`{"config": {"a.b": "x"}}` for a mapping)."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        *parents, last = str(key).split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        below = node.get(last)
        node[last] = (
            _overlay(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
        )
    return tree


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, mappings merged key by key, anything else replaced (as
    OmegaConf merges layers)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict):
            below = merged.get(key)
            merged[key] = _overlay(below if isinstance(below, dict) else {}, value)
        else:
            merged[key] = value
    return merged


def _with_values(layers: LayeredConfig, values: dict[str, Any] | None) -> LayeredConfig:
    """The layers with Python values on top: typed already, so each is its own text."""
    if values:
        tree = _nested(values)
        layers.mixin = _overlay(layers.mixin, tree)
        layers.mixin_text = _overlay(layers.mixin_text, tree)
    return layers


def load_layers(
    cfg_path: str | None,
    mixin_cfg_path: str | None,
    mixin_items: list[str],
    mixin_values: dict[str, Any] | None = None,
) -> LayeredConfig:
    """Read and merge the three layers; every problem is raised together as a UsageError.

    `mixin_values` (from Python) is the highest layer, above `--mixin`; its values are
    taken as they are, not interpolated.
    """
    errors = ErrorList()
    items = _valid_mixin_items(mixin_items, errors)
    if not cfg_path and not mixin_cfg_path and _is_plain_dotlist(items):
        errors.raise_if_any()
        layers = LayeredConfig(mixin=_plain_dotlist(items), mixin_text=_plain_dotlist(items, TEXT))
        return _with_values(layers, mixin_values)

    cfg: dict[str, Any] = {}
    if cfg_path:
        cfg = _read_yaml(cfg_path, "--cfg", errors, TYPED)
        _check_cfg_sections(cfg, cfg_path, errors)
    mixin_file = _read_yaml(mixin_cfg_path, "--mixin-cfg", errors, TYPED) if mixin_cfg_path else {}
    problems: dict[int, str] = {}
    dotlist = _omegaconf_dotlist(items, errors, problems)
    errors.raise_if_any()

    resolved = _merge(cfg, mixin_file, dotlist, cfg_path, mixin_cfg_path)
    texts = _texts(cfg_path, mixin_cfg_path, items, resolved["mixin"], problems)
    backbone = dict(resolved["backbone"])
    run = _run_settings(resolved, backbone, f"--cfg {cfg_path}", errors)
    errors.raise_if_any()
    layers = LayeredConfig(
        task=resolved["task"],
        backbone=backbone,
        mixin=resolved["mixin"],
        run=run,
        mixin_text=texts["mixin"],
        option_text={"task": texts["task"], "backbone": _flat_options(texts["backbone"])},
    )
    return _with_values(layers, mixin_values)


def _texts(
    cfg_path: str | None,
    mixin_cfg_path: str | None,
    items: list[str],
    typed: dict[str, Any],
    problems: dict[int, str],
) -> dict[str, Any]:
    """The document again, as typed: each file scalar as its source text, each `--mixin`
    value as a `CommandLineText`; merged and resolved as the typed pass was (any file
    problem was reported by that pass)."""
    from omegaconf.errors import OmegaConfBaseException

    cfg_text = _read_yaml(cfg_path, "--cfg", ErrorList(), TEXT) if cfg_path else {}
    file_text = (
        _read_yaml(mixin_cfg_path, "--mixin-cfg", ErrorList(), TEXT) if mixin_cfg_path else {}
    )
    try:
        text_items = _text_dotlist(items)
    except OmegaConfBaseException as exc:
        raise UsageError(f"configuration error: {str(exc).splitlines()[0]}") from None
    texts = _merge(cfg_text, file_text, text_items, cfg_path, mixin_cfg_path)
    _mark_command_line(texts["mixin"], typed, items, problems)
    return texts


def _flat_options(backbone: dict[str, Any]) -> dict[str, Any]:
    """A backbone section's options as `_run_settings` leaves them: `options:` merged in."""
    flat = {k: v for k, v in backbone.items() if k not in ("name", "options")}
    options = backbone.get("options")
    if isinstance(options, dict):
        flat.update({k: v for k, v in options.items() if k not in flat})
    return flat


def _check_cfg_sections(cfg: dict[str, Any], cfg_path: str, errors: ErrorList) -> None:
    for key in cfg:
        if key not in CFG_SECTIONS + RUN_KEYS:
            hint = did_you_mean(str(key), CFG_SECTIONS + RUN_KEYS)
            errors.add(
                f"--cfg {cfg_path}: unknown section '{key}'{hint}"
                " (sections are task, backbone, mixin; settings task_file, task_class,"
                " cwd, shard, force)"
            )
    for key in CFG_SECTIONS:
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            errors.add(f"--cfg {cfg_path}: section '{key}' must be a mapping")


def _merge(
    cfg: dict[str, Any],
    mixin_file: dict[str, Any],
    dotlist: dict[str, Any],
    cfg_path: str | None,
    mixin_cfg_path: str | None,
) -> dict[str, Any]:
    """`--cfg` < `--mixin-cfg` < `--mixin`, with `${...}` resolved across the document."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def section(name: str) -> dict[str, Any]:
        value = cfg.get(name)
        return value if isinstance(value, dict) else {}

    try:
        mixin = OmegaConf.merge(
            OmegaConf.create(section("mixin")),
            OmegaConf.create(mixin_file),
            OmegaConf.create(dotlist),
        )
        document = OmegaConf.create(
            {
                "cfg_dir": os.path.dirname(os.path.abspath(cfg_path)) if cfg_path else os.getcwd(),
                "mixin_cfg_dir": os.path.dirname(os.path.abspath(mixin_cfg_path))
                if mixin_cfg_path
                else os.getcwd(),
                "task": section("task"),
                "backbone": section("backbone"),
                "mixin": mixin,
                **{key: cfg[key] for key in RUN_KEYS if key in cfg},
            }
        )
        resolved = OmegaConf.to_container(document, resolve=True)
    except OmegaConfBaseException as exc:
        raise UsageError(f"configuration error: {str(exc).splitlines()[0]}") from None
    assert isinstance(resolved, dict)
    return resolved  # type: ignore[return-value]


_CFG_SHARD = re.compile(r"(?:(hash|index) )?(\d+/\d+)|(auto)|(all)")


def _run_settings(
    document: dict[str, Any], backbone: dict[str, Any], where: str, errors: ErrorList
) -> dict[str, Any]:
    """The run settings of a `--cfg` document, checked; takes `name` and `options` out of
    its backbone section (what is left there are options, as before)."""
    run: dict[str, Any] = {}
    for key in ("task_file", "task_class"):
        value = document.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            errors.add(f"{where} {key}: expected a {key.replace('_', ' ')}, got {value!r}")
        elif value is not None:
            run[key] = value
    cwd = document.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd)):
        errors.add(f"{where} cwd: expected the absolute folder it was printed in, got {cwd!r}")
    elif cwd is not None:
        run["cwd"] = cwd
    if "name" in backbone:
        name = backbone.pop("name")
        if not isinstance(name, str) or not name:
            errors.add(f"{where} backbone.name: expected a backbone name, got {name!r}")
        else:
            run["backbone"] = name
    options = backbone.pop("options", None)
    if isinstance(options, dict):
        backbone.update({k: v for k, v in options.items() if k not in backbone})
    elif options is not None:
        errors.add(f"{where} backbone.options: expected a mapping of options, got {options!r}")
    force = document.get("force")
    if force is not None and not isinstance(force, bool):
        errors.add(f"{where} force: expected true or false, got {force!r}")
    elif force:
        run["force"] = True
    shard = document.get("shard")
    match = _CFG_SHARD.fullmatch(shard.strip()) if isinstance(shard, str) else None
    if shard is not None and match is None:
        errors.add(
            f"{where} shard: expected I/N, 'hash I/N', 'index I/N', auto or all, got {shard!r}"
        )
    elif match is not None:
        run["shard"] = match.group(2) or match.group(3) or match.group(4)
        if match.group(1):
            run["shard_mode"] = match.group(1)
    return run


def _option_key(text: str) -> str:
    return text.lstrip("-").replace("-", "_")


def apply_option_defaults(
    parser: argparse.ArgumentParser,
    actions: list[argparse.Action],
    values: dict[str, Any],
    section: str,
    errors: ErrorList,
    texts: dict[str, Any] | None = None,
) -> None:
    """Make a `--cfg` section's values the defaults of the matching `actions` of `parser`.

    Keys match an option's dest or any of its option strings (`batch_size`, `batch-size`,
    `--batch-size`). Flags take booleans, list options take lists; the command line still
    overrides. Unknown keys are errors with a suggestion. `texts` is the section with each
    scalar as written: an option without a type takes text, as on the command line.
    """
    by_key: dict[str, argparse.Action] = {}
    for action in actions:
        if isinstance(action, argparse._HelpAction) or action.dest == argparse.SUPPRESS:
            continue
        by_key[_option_key(action.dest)] = action
        for opt in action.option_strings:
            by_key.setdefault(_option_key(opt), action)
    for key, value in values.items():
        action = by_key.get(_option_key(str(key)))
        if action is None:
            known = sorted({a.dest for a in by_key.values()})
            hint = did_you_mean(_option_key(str(key)), known)
            errors.add(f"--cfg {section}.{key}: no such {section} option{hint}")
            continue
        if action.type is None and not isinstance(value, (str, bool, list, dict)):
            written = (texts or {}).get(key)
            value = written if isinstance(written, str) else value
        try:
            value = _convert_for_action(action, value)
        except ValueError as exc:
            errors.add(f"--cfg {section}.{key}: {exc}")
            continue
        action.required = False
        parser.set_defaults(**{action.dest: value})


def _convert_for_action(action: argparse.Action, value: Any) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    many = (
        action.nargs in ("*", "+")
        or isinstance(action.nargs, int)
        or isinstance(action, argparse._AppendAction)
    )
    if many:
        if not isinstance(value, list):
            value = [value]
        converted = [_convert_one(action, v) for v in value]
        if isinstance(action.nargs, int) and len(converted) != action.nargs:
            raise ValueError(f"expected {action.nargs} values, got {len(converted)}")
        return converted
    if isinstance(value, (list, dict)) and action.type is None:
        return value
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if action.type is not None and isinstance(value, str):
        try:
            value = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"invalid value {value!r}: {exc}") from None
    elif action.type in (int, float) and not isinstance(value, (int, float)):
        raise ValueError(f"expected {action.type.__name__}, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not one of {list(action.choices)!r}")
    return value


# --- `--print-config`: a document `--cfg` reads back as the same values ------------------


def replay_problems(printed_in: str | None, mixin: Any, roots: list[str]) -> list[str]:
    """Why a `--cfg` printed in another folder would not make the same run here: its
    relative roots, and relative values that name something there, would mean other
    files here. A saved configuration with absolute paths replays from anywhere."""
    if printed_in is None or os.path.realpath(printed_in) == os.path.realpath(os.getcwd()):
        return []
    relative = [r for r in roots if _is_relative(r)]
    for value in _strings(mixin):
        there = _is_relative(value) and os.path.exists(os.path.join(printed_in, value))
        if there and value not in relative:
            relative.append(value)
    if not relative:
        return []
    return [
        f"--cfg was printed in {printed_in}, where the relative paths "
        f"{', '.join(map(repr, relative))} name other files and folders than here: run from "
        "there, make them absolute, or delete its cwd: line"
    ]


def _is_relative(path: Any) -> bool:
    return isinstance(path, str) and path != "" and "://" not in path and not os.path.isabs(path)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


_INTERPOLATION = re.compile(r"(\\*)\$\{")


def _escaped(value: Any) -> Any:
    """`value` with each `${` escaped as OmegaConf reads it back (`\\${`, and each
    backslash before it doubled): a value is its text, not an interpolation, once printed."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


@functools.cache
def _dumper() -> type[yaml.SafeDumper]:
    """A dumper that quotes every string the `typed` loader would read as something else
    (`'1e3'`, `'0123'`, `'yes'`, `'null'`, `''`)."""
    import yaml

    dumper = type("_ConfigDumper", (yaml.SafeDumper,), {})
    dumper.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    return dumper


def _differences(ours: Any, back: Any, path: str) -> list[str]:
    """The dotted paths where `back` (the document read again) is not `ours`."""
    if isinstance(ours, dict) and isinstance(back, dict) and list(ours) == list(back):
        return [p for k in ours for p in _differences(ours[k], back[k], f"{path}.{k}".lstrip("."))]
    if isinstance(ours, list) and isinstance(back, list) and len(ours) == len(back):
        return [p for i, v in enumerate(ours) for p in _differences(v, back[i], f"{path}.{i}")]
    same_nan = isinstance(ours, float) and isinstance(back, float) and ours != ours and back != back
    if same_nan or (type(ours) is type(back) and ours == back):
        return []
    return [path]


def config_document(config: dict[str, Any]) -> str:
    """The YAML `--print-config` writes: `--cfg` reads every value back as it is here (a
    `str` as its text, `${` included). A value YAML cannot write back is refused, naming it."""
    import yaml

    escaped = _escaped(config)
    unwritable = _differences(escaped, _plain_copy(escaped), "")
    if not unwritable:
        text = yaml.dump(escaped, Dumper=_dumper(), sort_keys=False)
        unwritable = _differences(escaped, yaml.load(text, Loader=_loader(TYPED)), "")
    if unwritable:
        raise UsageError(
            *(
                f"--print-config: {path} cannot be written so that --cfg reads it back as it is"
                for path in unwritable
            )
        )
    return text


def _plain_copy(value: Any) -> Any:
    """`value` with anything YAML cannot hold (an object, a tuple, a key that is not
    text or a number) replaced, so `_differences` names it."""
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            return None
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value if _is_plain_data(value) else MISSING
