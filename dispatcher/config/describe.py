"""The rows `-h` shows for a declaration: its placeholders, and the declared values that
can be overridden like them."""

from __future__ import annotations

import pathlib
from typing import Any

from dispatcher.config.declaration import (
    MISSING,
    Placeholder,
    children_of,
    is_record,
    iter_placeholders,
)


def describe(declaration: Any) -> list[tuple[str, str, str, str]]:
    """(path, type, default, help) rows for every placeholder, for `-h`."""
    rows = []
    for path, ph in iter_placeholders(declaration):
        default = "required" if ph.required else f"default {ph.default!r}"
        kind = ph.type_name()
        if ph.choices:  # the choices are the type: one line, whatever their values' types
            kind = f"one of {', '.join(map(str, ph.choices))}"
        rows.append((path, kind, default, ph.help))
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
        children = children_of(node)
        if is_record(node):
            name = type(node).__name__
            doc = (type(node).__doc__ or "").strip()
            own_doc = doc and not doc.startswith(f"{name}(")  # not the dataclass signature
            rows.append((path, f"({name})", first_paragraph(doc) if own_doc else ""))
        elif not children or not any(
            children_of(c) or isinstance(c, Placeholder) for c in children.values()
        ):
            if path:  # a value, or a list or mapping of plain values, set as a whole
                value = current if current is not MISSING else node
                rows.append((path, f"= {_plain_repr(value)}", ""))
            return
        current_children = children_of(current) if current is not MISSING else None
        for key, child in (children or {}).items():
            sub = current_children.get(key, MISSING) if current_children else MISSING
            walk(child, sub, f"{path}.{key}" if path else key)

    walk(declaration, filled, "")
    return rows


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph as one line (a wrapped sentence is never cut)."""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _plain_repr(value: Any) -> str:
    return repr(str(value)) if isinstance(value, pathlib.PurePath) else repr(value)
