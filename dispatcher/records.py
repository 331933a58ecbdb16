"""Earlier run records: which configuration made the outputs a rerun finds done.

Read from the log directory only, newest first by name (run folders start with their
time stamp), and only a few of them: a rerun stays as cheap as the plan.
"""

from __future__ import annotations

import json
import os
from typing import Any

NEWEST = 8
"""How many of the newest run records of a task class are looked at."""

SHAPING = ("mixin", "task")
"""The parts of a run's configuration that shape its outputs (not shard, backbone, force)."""

NOT_SHAPING = {"mixin": ("shard", "hard_shard")}
"""Mixin keys that choose which items run, not what their outputs hold."""

SHOWN_CHANGES = 5


def last_record(class_dir: str, output_roots: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The newest readable run record in `class_dir` over exactly these output roots."""
    try:
        names = sorted(os.listdir(class_dir), reverse=True)[:NEWEST]
    except OSError:
        return None
    for name in names:
        path = os.path.join(class_dir, name, "run.json")
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("output_roots") == output_roots:
            return path, record
    return None


def _flat(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flat(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def _shaping(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    mixin = config.get("mixin")
    if isinstance(mixin, dict):
        skip = NOT_SHAPING["mixin"]
        _flat({k: v for k, v in mixin.items() if k not in skip}, "", flat)
    task = config.get("task")
    if isinstance(task, dict):
        flat.update({f"--{k.replace('_', '-')}": v for k, v in task.items()})
    return flat


_ABSENT = object()


def config_changes(earlier: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each output-shaping setting that differs (a few, then a count)."""
    before, after = _shaping(earlier), _shaping(now)
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old != new:
            changes.append(f"{key}: {_shown(old)} -> {_shown(new)}")
    if len(changes) > SHOWN_CHANGES:
        changes[SHOWN_CHANGES:] = [f"and {len(changes) - SHOWN_CHANGES} more"]
    return changes


def _shown(value: Any) -> str:
    return "(unset)" if value is _ABSENT else repr(value)
