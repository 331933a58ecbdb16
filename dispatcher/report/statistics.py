"""Custom statistics a stage collects per item, gathered into the run's summary and record.

Workers append one JSON line per finished item to `<run dir>/statistics/<pid>.jsonl`
(any process, any thread: one `O_APPEND` write each), so nothing new travels with outcomes
and every backbone carries them unchanged. At the end the parent merges the lines: per key,
numbers give count, sum, min, max and mean; other values are counted by value.
"""

from __future__ import annotations

import decimal
import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

FOLDER = "statistics"
MAX_VALUES = 50
"""Distinct non-numeric values counted per key; the rest are counted as one 'other'."""


def _is_number(value: Any) -> bool:
    """A value summed as a number: one a float can hold. NaN, the infinities and integers
    past a float's range are counted by their text instead, so no statistic can overflow
    the summary or put a non-JSON number into `run.json`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _text(value: Any) -> str:
    """A counted value's name: NaN and the infinities as Python writes them (`nan`,
    `inf`), an int past a float's range in scientific notation, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _shown(value)
    return json.dumps(value, default=str)


def _shown(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return f"{value:g}"
    except OverflowError:  # an int past a float's range: Decimal formats any size
        return format(decimal.Decimal(value), ".5e")


class Statistics:
    """Per-key aggregates of observed values: `add` a row's dict, `merge` another's parts."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, Any]] = {}

    def add(self, values: Mapping[str, Any]) -> None:
        """One observation per key (a request's statistics, as the serving engine sends them)."""
        for key, value in values.items():
            part = self.parts.setdefault(str(key), {})
            if _is_number(value):
                if "sum" not in part:
                    part.update(count=1, sum=value, min=value, max=value)
                else:
                    part["count"] += 1
                    part["sum"] += value
                    part["min"] = min(part["min"], value)
                    part["max"] = max(part["max"], value)
            else:
                counted = part.setdefault("values", {})
                name = _text(value)
                if name not in counted and len(counted) >= MAX_VALUES:
                    name = "other"
                counted[name] = counted.get(name, 0) + 1

    def merge(self, parts: Mapping[str, Mapping[str, Any]]) -> None:
        for key, other in parts.items():
            part = self.parts.setdefault(key, {})
            if "sum" in other:
                if "sum" not in part:
                    part.update(count=0, sum=0, min=other["min"], max=other["max"])
                part["count"] += other["count"]
                part["sum"] += other["sum"]
                part["min"] = min(part["min"], other["min"])
                part["max"] = max(part["max"], other["max"])
            for name, n in other.get("values", {}).items():
                counted = part.setdefault("values", {})
                if name not in counted and len(counted) >= MAX_VALUES:
                    name = "other"
                counted[name] = counted.get(name, 0) + n

    def __bool__(self) -> bool:
        return bool(self.parts)

    def summary(self) -> dict[str, dict[str, Any]]:
        """What `run.json` records: the parts, with each numeric key's mean."""
        out: dict[str, dict[str, Any]] = {}
        for key in sorted(self.parts):
            part = dict(self.parts[key])
            if "sum" in part:
                # sum / count <= max: the mean fits a float even where an int sum does not
                # (a float sum that overflowed is `inf`, written as text in run.json).
                part["mean"] = part["sum"] / part["count"]
            out[key] = part
        return out


def record(run_dir: str | None, parts: Statistics) -> None:
    """Append one item's statistics to this process's file in the run directory."""
    if run_dir is None or not parts:
        return
    folder = os.path.join(run_dir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    line = json.dumps(parts.parts, default=str).encode() + b"\n"
    fd = os.open(
        os.path.join(folder, f"{os.getpid()}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def collect(run_dir: str) -> Statistics:
    """Every item's statistics of a run, merged (empty when none were recorded)."""
    merged = Statistics()
    folder = os.path.join(run_dir, FOLDER)
    if not os.path.isdir(folder):
        return merged
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            for line in fh:
                try:
                    merged.merge(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a killed worker
    return merged


def describe(summary: Mapping[str, Mapping[str, Any]]) -> Iterable[str]:
    """One summary line per key."""
    for key, part in summary.items():
        shown = []
        if "sum" in part:
            shown.append(
                f"n={part['count']} sum={_shown(part['sum'])} min={_shown(part['min'])} "
                f"max={_shown(part['max'])} mean={_shown(part['mean'])}"
            )
        if "values" in part:
            top = sorted(part["values"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            shown.append(", ".join(f"{name}: {n}" for name, n in top))
        yield f"{key}: {'; '.join(shown)}"
