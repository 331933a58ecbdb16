"""A configured value converted to its declared type (`coerce`): a `str` takes the text as
typed, numbers and booleans are read strictly, None is a value only where declared."""

from __future__ import annotations

import contextlib
import pathlib
import typing
from typing import Any

from dispatcher.config.declaration import MISSING, CommandLineText, type_name


def _takes_text(tp: Any) -> bool:
    """A type whose value is text as it is: `str` and paths (`res #2` is a folder)."""
    return tp is str or (isinstance(tp, type) and issubclass(tp, pathlib.PurePath))


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
    return _KIND.get(tp, type_name(tp))


def text_at(text: Any, key: Any) -> Any:
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
    if origin in (list, tuple, dict):
        return _coerce_container(value, tp, origin, text)
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
        raise ValueError(f"cannot convert {value!r} to {type_name(tp)}: {exc}") from None


def _coerce_container(value: Any, tp: Any, origin: Any, text: Any) -> Any:
    """A `list[...]`, `tuple[...]` or `dict[...]`, each element coerced to its type."""
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        key_tp, val_tp = (typing.get_args(tp) + (None, None))[:2]
        return {coerce(k, key_tp): coerce(v, val_tp, text_at(text, k)) for k, v in value.items()}
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {value!r}")
    args = typing.get_args(tp)
    if not args or args[0] is Ellipsis:
        return tuple(value) if origin is tuple else list(value)
    items = [coerce(v, args[0], text_at(text, i)) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


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
