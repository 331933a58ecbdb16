"""Placeholders: the holes in a task's declaration that configuration fills.

A declaration is any tree of dicts, lists, dataclasses and plain objects. Leaves may be
`MIXIN_PLACEHOLDER` (untyped, required) or `Placeholder(type, default, choices, help)`.
`fill()` walks the declaration and the merged configuration side by side and returns a
filled copy, collecting every problem (unfilled, unknown key, wrong type, bad choice) so
they are reported together before any work starts.

The parts live beside it (`declaration`, `coercion`, `describe`); their public names are
importable from here, where tasks and the runner find them.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

from dispatcher.config.coercion import coerce, text_at
from dispatcher.config.declaration import (
    MISSING,
    MIXIN_PLACEHOLDER,
    CommandLineText,
    Mixin,
    Placeholder,
    children_of,
    flat_paths,
    iter_leaves,
    iter_placeholders,
)
from dispatcher.config.describe import describe, describe_values
from dispatcher.errors import ErrorList, did_you_mean

__all__ = [
    "MISSING",
    "MIXIN_PLACEHOLDER",
    "CommandLineText",
    "Mixin",
    "Placeholder",
    "coerce",
    "describe",
    "describe_values",
    "fill",
    "iter_leaves",
    "iter_placeholders",
]


def _check(value: Any, ph: Placeholder, path: str, errors: ErrorList, text: Any = MISSING) -> Any:
    if value is None and ph.default is None and not isinstance(text, CommandLineText):
        return None  # a declared default of None makes null a value
    try:
        value = coerce(value, ph.type, text)
    except ValueError as exc:
        errors.add(f"mixin '{path}': {exc}")
        return MISSING
    if ph.choices is not None and value not in ph.choices:
        errors.add(f"mixin '{path}': {value!r} is not one of {ph.choices!r}")
        return MISSING
    return value


def _fill_leaf(node: Any, override: Any, text: Any, path: str, errors: ErrorList) -> Any:
    if isinstance(node, Placeholder):
        if override is not MISSING:
            return _check(override, node, path, errors, text)
        if node.required:
            hint = f": {node.help}" if node.help else ""
            errors.add(f"unfilled placeholder '{path}'{hint} (set it with --mixin {path}=...)")
            return MISSING
        return node.default
    if override is MISSING:
        return node
    typed = isinstance(text, CommandLineText)
    scalar = (bool, int, float, str, pathlib.PurePath)
    if isinstance(node, scalar) and (typed or not isinstance(override, (dict, list))):
        return _check(override, Placeholder(type(node)), path, errors, text)
    if typed and text.problem is not None:
        errors.add(f"mixin '{path}': cannot read {text.text!r} as YAML: {text.problem}")
        return MISSING
    return override


def _fill(
    node: Any, override: Any, text: Any, path: str, errors: ErrorList, all_paths: list[str]
) -> Any:
    children = None if isinstance(node, Placeholder) else children_of(node)
    if children is None or (not children and override is not MISSING):
        # A leaf, or an empty container declared open: the configured value is taken as is.
        return _fill_leaf(node, override, text, path, errors)
    if override is not MISSING and not isinstance(override, dict):
        if isinstance(node, (list, tuple)) and isinstance(override, (list, tuple)):
            return type(node)(override) if isinstance(node, tuple) else list(override)
        if override is None:
            return None
        if isinstance(node, (list, tuple)):
            errors.add(
                f"mixin '{path}': expected a list, got {override!r} "
                f"(on the command line: --mixin '{path}=[{_shown_item(override)}]')"
            )
            return node
        errors.add(f"mixin '{path}': expected a mapping of its fields, got {override!r}")
        return node
    given = dict(override) if override is not MISSING else {}
    given = {str(k): v for k, v in given.items()}
    for key in given:
        if key not in children:
            for bad in flat_paths(given[key], f"{path}.{key}" if path else key):
                errors.add(f"unknown mixin key '{bad}'{did_you_mean(bad, all_paths)}")
    filled = {
        key: _fill(
            child,
            given.get(key, MISSING),
            text_at(text, key),
            f"{path}.{key}" if path else key,
            errors,
            all_paths,
        )
        for key, child in children.items()
    }
    if isinstance(node, dict):
        return Mixin({orig: filled[str(orig)] for orig in node})
    if isinstance(node, (list, tuple)):
        values = [filled[str(i)] for i in range(len(node))]
        return tuple(values) if isinstance(node, tuple) else values
    clone = copy.copy(node)
    for key, value in filled.items():
        object.__setattr__(clone, key, value)
    return clone


def _shown_item(value: Any) -> str:
    """A scalar as it would be written inside a YAML flow list."""
    return value if isinstance(value, str) else repr(value)


def fill(
    declaration: Any,
    overrides: dict[str, Any] | None,
    errors: ErrorList,
    texts: dict[str, Any] | None = None,
) -> Any:
    """Return `declaration` with every placeholder replaced by its configured value.

    `texts` is the same tree as `overrides` with each scalar as it was typed (see
    `coerce`). Problems are added to `errors`; the caller raises them together.
    """
    if declaration is None:
        for key, value in (overrides or {}).items():
            for bad in flat_paths(value, str(key)):
                errors.add(f"unknown mixin key '{bad}' (this task declares no mixin)")
        return Mixin()
    all_paths = [p for p, _ in iter_leaves(declaration)]
    all_paths += sorted({p.rsplit(".", 1)[0] for p in all_paths if "." in p})
    given = overrides if overrides else MISSING
    return _fill(declaration, given, texts if texts else MISSING, "", errors, all_paths)
