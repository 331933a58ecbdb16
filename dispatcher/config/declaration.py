"""What a task's declaration is made of: `Placeholder`s (the holes configuration fills),
`MISSING`, the `Mixin` a filled dict becomes, `CommandLineText` (a value as typed), and
the walk over a declaration tree (dicts, lists, dataclasses, plain objects)."""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from collections.abc import Iterator
from typing import Any


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
        return type_name(self.type)

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


def type_name(tp: Any) -> str:
    if tp is None:
        return "any"
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", repr(tp))


def is_record(node: Any) -> bool:
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


def children_of(node: Any) -> dict[str, Any] | None:
    if isinstance(node, dict):
        return {str(k): v for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return {str(i): v for i, v in enumerate(node)}
    if is_record(node):
        return _record_fields(node)
    return None


def iter_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf) of a declaration; placeholders are leaves."""
    children = None if isinstance(node, Placeholder) else children_of(node)
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


def flat_paths(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict) and value:
        out: list[str] = []
        for k, v in value.items():
            out.extend(flat_paths(v, f"{prefix}.{k}"))
        return out
    return [prefix]
