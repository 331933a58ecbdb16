"""The `--mixin KEY=VALUE` items as a tree: merged as OmegaConf merges them, each value
YAML-typed, and again as typed (`CommandLineText`); plain items without OmegaConf."""

from __future__ import annotations

import re
from typing import Any

from dispatcher.config.declaration import MISSING, CommandLineText
from dispatcher.config.values import TEXT, TYPED, command_line_text, load_value, typed_value
from dispatcher.errors import ErrorList, UsageError


def valid_mixin_items(items: list[str], errors: ErrorList) -> list[str]:
    """The items of the form KEY=VALUE; each other one is an error in `errors`."""
    good = []
    for item in items:
        if "=" not in item:
            errors.add(f"--mixin item '{item}' has no '=' (expected KEY=VALUE)")
        elif not item.split("=", 1)[0].strip():
            errors.add(f"--mixin item '{item}' has an empty key")
        else:
            good.append(item)
    return good


def omegaconf_dotlist(
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
            _, problem = typed_value(text)
            if problems is not None:
                problems[index] = problem or str(exc).splitlines()[0]
        merged = OmegaConf.to_container(OmegaConf.merge(merged, conf), resolve=False)  # type: ignore[assignment]
    return merged


# --- the common case without OmegaConf ---------------------------------------------------
# Importing OmegaConf costs more than the rest of a rerun's start-up. With no file to merge,
# no interpolation, and distinct plain dotted keys, a `--mixin` list is only nested keys
# and YAML values, which the `typed` loader types exactly as OmegaConf's does (1e3 is a float, a
# date stays a string); tests compare the two on generated items.

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def text_dotlist(items: list[str]) -> dict[str, Any]:
    """The `--mixin` items merged as `omegaconf_dotlist` merges them, each value the text
    after `=` (OmegaConf resolves its `${...}`, the one exception to verbatim); a list or
    mapping as the source text of its scalars, so both passes merge alike."""
    from omegaconf import OmegaConf

    merged: dict[str, Any] = {}
    for item in items:
        key, text = item.split("=", 1)
        conf = OmegaConf.create({})
        try:
            parsed = typed_value(text)[1] is None and load_value(text, TEXT)
        except ValueError:
            parsed = None
        if isinstance(parsed, (list, dict)):
            OmegaConf.update(conf, key, parsed, merge=True)
        else:
            OmegaConf.update(conf, key, text if text != "" else None, merge=True)
        merged = OmegaConf.to_container(OmegaConf.merge(merged, conf), resolve=False)  # type: ignore[assignment]
    return merged


def mark_command_line(
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
        elif isinstance(leaf, (list, dict)) and value == typed_value(text)[0]:
            node[last] = CommandLineText(text, leaf)


def is_plain_dotlist(items: list[str]) -> bool:
    """Whether the items have distinct plain keys, none below another, and no `${`: then
    `plain_dotlist` reads them exactly as OmegaConf would, without importing it."""
    keys = [item.split("=", 1)[0] for item in items]
    if any(
        "${" in item.split("=", 1)[1] or not _PLAIN_KEY.fullmatch(k)
        for item, k in zip(items, keys, strict=True)
    ):
        return False
    prefixes = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    return len(set(keys)) == len(keys) and not prefixes & set(keys)


def plain_dotlist(items: list[str], kind: str = TYPED) -> dict[str, Any]:
    """`kind` TYPED: the YAML values (a value YAML cannot read is its text); TEXT: the
    command line's texts (`CommandLineText`). Keys are plain and distinct."""
    tree: dict[str, Any] = {}
    for item in items:
        key, text = item.split("=", 1)
        value, problem = typed_value(text)
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value if kind == TYPED else command_line_text(text, value, problem)
    return tree
