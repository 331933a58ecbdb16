"""Failures grouped for the summary: one line per kind of failure, not per item.

A bug that fails 40,000 items fails them with one message that differs only in a number,
a path or a quoted value; the summary names such a kind once, with how many items it
failed and the first of them (by key), and `failures.jsonl` keeps every item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"(?:[\w.~-]*/)+[\w.@~-]*")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def kind_of(error: str) -> str:
    """An error line with what varies from item to item masked: quoted values, paths and
    numbers (`ValueError: no frame 12 in '/d/a.mp4'` -> `ValueError: no frame <N> in <Q>`)."""
    masked = _QUOTED.sub("<Q>", error)
    masked = _PATH.sub("<PATH>", masked)
    return _NUMBER.sub("<N>", masked)


@dataclass
class _Kind:
    count: int
    key: str
    error: str


@dataclass
class FailureGroups:
    """Failed items by kind (`kind_of` their error line): how many, and the first by key."""

    kinds: dict[str, _Kind] = field(default_factory=dict)
    count: int = 0

    def add(self, key: str, error: str) -> None:
        self.count += 1
        kind = kind_of(error)
        seen = self.kinds.get(kind)
        if seen is None:
            self.kinds[kind] = _Kind(1, key, error)
            return
        seen.count += 1
        if key < seen.key:
            seen.key, seen.error = key, error

    def lines(self, limit: int) -> list[str]:
        """The most frequent kinds first (then by first key): `failed KEY: ERROR`, and
        how many more failed like it; then how many kinds were left out."""
        ordered = sorted(self.kinds.items(), key=lambda kv: (-kv[1].count, kv[1].key))
        lines = []
        for kind, seen in ordered[:limit]:
            line = f"failed {seen.key}: {seen.error}"
            if seen.count > 1:
                line += f" (and {seen.count - 1} more like it: {kind})"
            lines.append(line)
        left = ordered[limit:]
        if left:
            items = sum(seen.count for _, seen in left)
            lines.append(f"... and {len(left)} more kinds of failure ({items} items)")
        return lines
