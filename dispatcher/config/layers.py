"""Layered configuration: `--cfg` < `--mixin-cfg` < `--mixin k=v`, merged with OmegaConf.

`--cfg` has three sections: `task:` and `backbone:` become command-line options (their
values act as option defaults, so the command line still wins), `mixin:` is the lowest
layer of the mixin. It may also name the run itself, as `--print-config` writes it:
`task_file`, `task_class`, `shard`, `force` and `rows_per_item` at the top, and the backbone's `name`
(with its `options:`) in `backbone:`; what the command line says wins. `${...}` interpolation is resolved across the whole document, with
`${cfg_dir}` (and `${mixin_cfg_dir}`) naming the directory of the config file. A command
line with only plain `--mixin k=v` items has nothing to merge or interpolate, and is read
without importing OmegaConf (it costs more than the rest of a rerun's start-up).

What the user typed is what runs: each layer is read twice, YAML-typed (`mixin`) and as
typed (`mixin_text`), and the declared type picks. A `str` placeholder takes a `--mixin`
value's text after `=` verbatim (`#`, `>`, `|`, quotes and newlines kept; `${...}` still
resolved), and a YAML file scalar's source text (`tag: 0123` is "0123"); any other type
takes the YAML value (`values` reads one value both ways, `dotlist` the `--mixin` items).
`document.config_document` writes `--print-config`'s YAML so that `--cfg` reads every value
back as it was; `option_defaults` turns the `task:` and `backbone:` sections into option
defaults. Both are importable from here, where a run reads its configuration.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from dispatcher.config.document import config_document
from dispatcher.config.dotlist import (
    is_plain_dotlist,
    mark_command_line,
    omegaconf_dotlist,
    plain_dotlist,
    text_dotlist,
    valid_mixin_items,
)
from dispatcher.config.option_defaults import apply_option_defaults
from dispatcher.config.values import TEXT, TYPED, loader
from dispatcher.errors import ErrorList, UsageError, did_you_mean

CFG_SECTIONS = ("task", "backbone", "mixin")
RUN_KEYS = ("task_file", "task_class", "cwd", "shard", "force", "rows_per_item", "storage")

__all__ = [
    "CFG_SECTIONS",
    "RUN_KEYS",
    "LayeredConfig",
    "apply_option_defaults",
    "config_document",
    "load_layers",
]


def rows_per_item_problems(where: str, value: object) -> list[str]:
    """Why `value` is no number of rows per item (None: the option is not used)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return []
    return [f"{where}: expected a number of rows, 1 or more, got {value!r}"]


@dataclass
class LayeredConfig:
    """The merged, interpolated configuration, before it meets the task's declaration."""

    task: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    mixin: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    """Run settings the file names: task_file, task_class, cwd (where it was printed),
    backbone, shard, shard_mode, force, rows_per_item."""
    option_text: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The `task` and `backbone` sections with each scalar as its source text, for
    options that take text (`tag: 0123` is "0123" for an option without a type)."""
    origins: dict[str, str] = field(default_factory=dict)
    """Dotted mixin key -> `FILE:LINE` where a file layer set it (`config/origins.py`)."""
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
            data = yaml.load(fh, Loader=loader(kind))
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
    items = valid_mixin_items(mixin_items, errors)
    if not cfg_path and not mixin_cfg_path and is_plain_dotlist(items):
        errors.raise_if_any()
        layers = LayeredConfig(mixin=plain_dotlist(items), mixin_text=plain_dotlist(items, TEXT))
        return _with_values(layers, mixin_values)

    cfg: dict[str, Any] = {}
    if cfg_path:
        cfg = _read_yaml(cfg_path, "--cfg", errors, TYPED)
        _check_cfg_sections(cfg, cfg_path, errors)
    mixin_file = _read_yaml(mixin_cfg_path, "--mixin-cfg", errors, TYPED) if mixin_cfg_path else {}
    problems: dict[int, str] = {}
    dotlist = omegaconf_dotlist(items, errors, problems)
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
        origins=_origins(cfg_path, mixin_cfg_path, dotlist),
        mixin_text=texts["mixin"],
        option_text={"task": texts["task"], "backbone": _flat_options(texts["backbone"])},
    )
    return _with_values(layers, mixin_values)


def _origins(
    cfg_path: str | None, mixin_cfg_path: str | None, dotlist: dict[str, Any]
) -> dict[str, str]:
    """Where the files set each mixin key, the higher file winning; keys the command line
    sets are its own."""
    from dispatcher.config.origins import file_origins

    origins = file_origins(cfg_path, "mixin") if cfg_path else {}
    if mixin_cfg_path:
        origins.update(file_origins(mixin_cfg_path))
    for key in flat_keys(dotlist):
        origins.pop(key, None)
    return origins


def flat_keys(tree: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping, containers included."""
    keys = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            keys += [path, *flat_keys(value, path)]
    return keys


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
        text_items = text_dotlist(items)
    except OmegaConfBaseException as exc:
        raise UsageError(f"configuration error: {str(exc).splitlines()[0]}") from None
    texts = _merge(cfg_text, file_text, text_items, cfg_path, mixin_cfg_path)
    mark_command_line(texts["mixin"], typed, items, problems)
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
                " cwd, shard, force, rows_per_item, storage)"
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
    storage = document.get("storage")
    if storage is not None:
        from dispatcher.storage.client import option_problems

        problems = option_problems(storage, f"{where} storage")
        errors.extend(UsageError(*problems))
        if not problems:
            run["storage"] = storage
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
    rows = document.get("rows_per_item")
    if rows is not None:
        wrong = rows_per_item_problems(f"{where} rows_per_item", rows)
        if wrong:
            errors.add(wrong[0])
        else:
            run["rows_per_item"] = rows
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
