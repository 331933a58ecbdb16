"""Placeholders: the holes in a task's declaration that configuration fills.

A declaration is any tree of dicts, lists, dataclasses and plain objects. Leaves may be
`MIXIN_PLACEHOLDER` (untyped, required) or `Placeholder(type, default, choices, help)`.
`fill()` walks the declaration and the merged configuration side by side and returns a
filled copy, collecting every problem (unfilled, unknown key, wrong type, bad choice) so
they are reported together before any work starts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pathlib
import typing
from collections.abc import Iterator
from typing import Any

from dispatcher.errors import ErrorList, did_you_mean


class _Missing:
    """Marks the absence of a value (distinct from None, which is a value)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Placeholder:
    """A declared field to be filled by configuration, optionally typed, with a default.

    `type` may be a class (int, float, bool, str, list, dict, pathlib.Path), a generic such
    as `list[str]`, or any callable converting a value. Without a default it is required.
    """

    def __init__(
        self,
        type: Any = None,
        default: Any = MISSING,
        choices: list[Any] | tuple[Any, ...] | None = None,
        help: str = "",
    ) -> None:
        self.type = type
        self.default = default
        self.choices = list(choices) if choices is not None else None
        self.help = help

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def type_name(self) -> str:
        return _type_name(self.type)

    def __repr__(self) -> str:
        parts = [self.type_name()]
        if not self.required:
            parts.append(f"default={self.default!r}")
        if self.choices is not None:
            parts.append(f"choices={self.choices!r}")
        return f"Placeholder({', '.join(parts)})"


MIXIN_PLACEHOLDER = Placeholder()
"""An untyped, required placeholder: the configuration must provide this value."""


class Mixin(dict):
    """A filled declaration dict whose keys are also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Mixin, (dict(self),))


class CommandLineText:
    """A `--mixin KEY=VALUE` value as typed: a `str` (or path) placeholder takes `text`,
    the text after `=` (with `${...}` resolved), verbatim; any other type takes the YAML
    value, with `elements` the source text of each of its scalars (`[0123]` keeps "0123"
    for a `list[str]`). `problem` says why YAML cannot read the text, if it cannot: a
    `str` does not care, any other type is refused with it."""

    __slots__ = ("elements", "problem", "text")

    def __init__(self, text: str, elements: Any = MISSING, problem: str | None = None) -> None:
        self.text = text
        self.elements = elements
        self.problem = problem

    def __repr__(self) -> str:
        return f"CommandLineText({self.text!r})"


def _takes_text(tp: Any) -> bool:
    """A type whose value is text as it is: `str` and paths (`res #2` is a folder)."""
    return tp is str or (isinstance(tp, type) and issubclass(tp, pathlib.PurePath))


def _type_name(tp: Any) -> str:
    if tp is None:
        return "any"
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", repr(tp))


def _is_record(node: Any) -> bool:
    """A dataclass instance or a plain object whose attributes are declared fields."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return True
    return (
        hasattr(node, "__dict__")
        and not isinstance(node, (type, Placeholder, pathlib.PurePath))
        and not callable(node)
        and type(node).__module__ != "builtins"
    )


def _record_fields(node: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(node):
        return {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    return {k: v for k, v in vars(node).items() if not k.startswith("_")}


def _children(node: Any) -> dict[str, Any] | None:
    if isinstance(node, dict):
        return {str(k): v for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return {str(i): v for i, v in enumerate(node)}
    if _is_record(node):
        return _record_fields(node)
    return None


def iter_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf) of a declaration; placeholders are leaves."""
    children = None if isinstance(node, Placeholder) else _children(node)
    if not children:
        if prefix:
            yield prefix, node
        return
    for key, child in children.items():
        yield from iter_leaves(child, f"{prefix}.{key}" if prefix else key)


def iter_placeholders(node: Any) -> Iterator[tuple[str, Placeholder]]:
    for path, leaf in iter_leaves(node):
        if isinstance(leaf, Placeholder):
            yield path, leaf


def _flat_paths(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict) and value:
        out: list[str] = []
        for k, v in value.items():
            out.extend(_flat_paths(v, f"{prefix}.{k}"))
        return out
    return [prefix]


_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_KIND = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_KIND.update({list: "a list", tuple: "a list", dict: "a mapping"})


def _allows_none(tp: Any) -> bool:
    """Whether `tp` is untyped, Optional, or a Union with None."""
    if tp is None or tp is type(None):
        return True
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or (
        origin is not None and str(origin) == "<class 'types.UnionType'>"
    )


def _kind(tp: Any) -> str:
    """`tp` in words, for "expected ..., got ..." messages."""
    origin = typing.get_origin(tp)
    if origin is not None and not _is_union(tp):
        tp = origin
    return _KIND.get(tp, _type_name(tp))


def _text_at(text: Any, key: Any) -> Any:
    """The source text of one element of a container, when the configuration kept it."""
    if isinstance(text, CommandLineText):
        text = text.elements
    if isinstance(text, dict):
        return text.get(str(key), text.get(key, MISSING))
    if isinstance(text, list) and str(key).isdigit() and int(key) < len(text):
        return text[int(key)]
    return MISSING


def coerce(value: Any, tp: Any, text: Any = MISSING) -> Any:
    """Convert a configured value to a declared type; raises ValueError with a reason.

    `text` is the value as it was typed (a parallel tree of strings for containers), when
    the configuration kept it: a `str` type takes the text, so `0123` stays `"0123"`
    instead of becoming the YAML integer 83; a `CommandLineText` is the command line's text,
    verbatim for a `str`. `None` (YAML `null`, an empty value) is a value only for an
    untyped or Optional type.
    """
    if isinstance(text, CommandLineText):
        if _takes_text(tp):
            return text.text if tp is str else tp(text.text)
        if _is_union(tp) and any(_takes_text(arg) for arg in typing.get_args(tp)):
            return _coerce_union(value, tp, text)  # `str | None`: the text, before null
        if text.problem is not None and not _is_union(tp):
            raise ValueError(f"cannot read {text.text!r} as YAML: {text.problem}")
    if value is None:
        if _allows_none(tp):
            return None
        raise ValueError(f"expected {_kind(tp)}, got null")
    if tp is None:
        return value
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        args = typing.get_args(tp)
        if not args or args[0] is Ellipsis:
            return tuple(value) if origin is tuple else list(value)
        items = [coerce(v, args[0], _text_at(text, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        key_tp, val_tp = (typing.get_args(tp) + (None, None))[:2]
        return {coerce(k, key_tp): coerce(v, val_tp, _text_at(text, k)) for k, v in value.items()}
    if _is_union(tp):
        return _coerce_union(value, tp, text)
    if tp in _NUMBERS:
        return _NUMBERS[tp](value)
    if tp is str:
        return _as_text(value, text)
    if tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            return tp(value)
        raise ValueError(f"expected a list, got {value!r}")
    if tp is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(f"expected a mapping, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    if isinstance(text, str) and not isinstance(value, (str, list, dict)):
        value = text  # a converter such as pathlib.Path gets what was typed, not 83 for 0123
    try:
        return tp(value)
    except Exception as exc:  # a user-supplied converter: any failure is a type error
        raise ValueError(f"cannot convert {value!r} to {_type_name(tp)}: {exc}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected a boolean, got {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _as_number(value, int, "an integer", (int,))


def _as_float(value: Any) -> float:
    return _as_number(value, float, "a number", (int, float))


def _as_number(value: Any, cast: type, what: str, exact: tuple[type, ...]) -> Any:
    """`value` as `cast`: a number of the `exact` types, or its text; never a bool."""
    if isinstance(value, exact) and not isinstance(value, bool):
        return cast(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return cast(value.strip())
    raise ValueError(f"expected {what}, got {value!r}")


_NUMBERS: dict[Any, Any] = {bool: _as_bool, int: _as_int, float: _as_float}


def _coerce_union(value: Any, tp: Any, text: Any) -> Any:
    """The first of the union's types that takes the value."""
    reasons = []
    for arg in typing.get_args(tp):
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, text)
        except ValueError as exc:
            reasons.append(str(exc))
    raise ValueError("; ".join(reasons))


def _as_text(value: Any, text: Any) -> str:
    """A `str` value: a YAML string as it is, any other scalar as it was typed."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"expected a string, got {value!r}")
    if isinstance(text, str):
        return text
    if isinstance(value, (int, float, pathlib.PurePath)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


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
    children = None if isinstance(node, Placeholder) else _children(node)
    if children is None or (not children and override is not MISSING):
        # A leaf, or an empty container declared open: the configured value is taken as is.
        return _fill_leaf(node, override, text, path, errors)
    if override is not MISSING and not isinstance(override, dict):
        if isinstance(node, (list, tuple)) and isinstance(override, (list, tuple)):
            return type(node)(override) if isinstance(node, tuple) else list(override)
        if override is None:
            return None
        errors.add(f"mixin '{path}': expected a mapping of its fields, got {override!r}")
        return node
    given = dict(override) if override is not MISSING else {}
    given = {str(k): v for k, v in given.items()}
    for key in given:
        if key not in children:
            for bad in _flat_paths(given[key], f"{path}.{key}" if path else key):
                errors.add(f"unknown mixin key '{bad}'{did_you_mean(bad, all_paths)}")
    filled = {
        key: _fill(
            child,
            given.get(key, MISSING),
            _text_at(text, key),
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
            for bad in _flat_paths(value, str(key)):
                errors.add(f"unknown mixin key '{bad}' (this task declares no mixin)")
        return Mixin()
    all_paths = [p for p, _ in iter_leaves(declaration)]
    all_paths += sorted({p.rsplit(".", 1)[0] for p in all_paths if "." in p})
    given = overrides if overrides else MISSING
    return _fill(declaration, given, texts if texts else MISSING, "", errors, all_paths)


def describe(declaration: Any) -> list[tuple[str, str, str, str]]:
    """(path, type, default, help) rows for every placeholder, for `-h`."""
    rows = []
    for path, ph in iter_placeholders(declaration):
        default = "required" if ph.required else f"default {ph.default!r}"
        help_text = ph.help + (
            f" (choices: {', '.join(map(str, ph.choices))})" if ph.choices else ""
        )
        rows.append((path, ph.type_name(), default, help_text))
    return rows


def describe_values(declaration: Any, filled: Any = MISSING) -> list[tuple[str, str, str]]:
    """(path, value, help) rows for the declared values that are not placeholders, for `-h`.

    A mode or other record gets a row naming its class (its docstring's first line as
    help), then one row per field with its current value (from `filled`, the configured
    copy, when given): each can be overridden like a placeholder (`input_mode.hidden=true`).
    """
    rows: list[tuple[str, str, str]] = []

    def walk(node: Any, current: Any, path: str) -> None:
        if isinstance(node, Placeholder):
            return
        children = _children(node)
        if _is_record(node):
            name = type(node).__name__
            doc = (type(node).__doc__ or "").strip()
            own_doc = doc and not doc.startswith(f"{name}(")  # not the dataclass signature
            rows.append((path, f"({name})", doc.splitlines()[0] if own_doc else ""))
        elif not children or not any(
            _children(c) or isinstance(c, Placeholder) for c in children.values()
        ):
            if path:  # a value, or a list or mapping of plain values, set as a whole
                value = current if current is not MISSING else node
                rows.append((path, f"= {_plain_repr(value)}", ""))
            return
        current_children = _children(current) if current is not MISSING else None
        for key, child in (children or {}).items():
            sub = current_children.get(key, MISSING) if current_children else MISSING
            walk(child, sub, f"{path}.{key}" if path else key)

    walk(declaration, filled, "")
    return rows


def _plain_repr(value: Any) -> str:
    return repr(str(value)) if isinstance(value, pathlib.PurePath) else repr(value)
