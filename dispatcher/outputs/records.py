"""Earlier run records: which configuration made the outputs a rerun finds done.

Each run that makes outputs leaves a small hidden provenance record at each of its output
roots (`.dispatch-run.CLASS`, JSON: the configuration and the path of its run record), so
the run that made them is found from any working directory, however many runs came since:
one read per output root, and a rerun stays as cheap as the plan. Outputs made before
provenance records existed are compared with the newest run records in the log directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from dispatcher.outputs.paths import hidden_beside
from dispatcher.outputs.staging import atomic_write
from dispatcher.storage import urls

NEWEST = 8
"""How many of the newest run records of a task class are looked at."""

SHAPING = ("mixin", "task")
"""The parts of a run's configuration that shape its outputs (not shard, backbone, force)."""

NOT_SHAPING = {"mixin": ("shard", "hard_shard")}
"""Mixin keys that choose which items run, not what their outputs hold."""

SHOWN_CHANGES = 5


PROVENANCE_PREFIX = ".dispatch-run."
"""Provenance records are named `.dispatch-run.CLASS`: hidden, never an item, and without
an extension, so a consumer's `*.json` glob over the outputs never picks one up."""


def provenance_path(root: str, task_class: str) -> str:
    return os.path.join(root, f"{PROVENANCE_PREFIX}{task_class}")


def provenance_beside(root: str, task_class: str) -> str:
    """The record beside the root (`OUT/../.OUT.dispatch-run.CLASS`), for an output root
    that must hold nothing but what the task's own code writes there."""
    return hidden_beside(root, f"{PROVENANCE_PREFIX}{task_class}")


def is_provenance_name(name: str) -> bool:
    return name.startswith(".") and PROVENANCE_PREFIX in name


def write_provenance(
    paths: Sequence[str], task_class: str, config: dict[str, Any], run_record: str
) -> str | None:
    """Record at `paths` (one per output root) what is about to make outputs there; the
    reason when one cannot be written (the run goes on: only a later drift note needs it)."""
    made = {
        "task_class": task_class,
        "config": config,
        "run_record": os.path.abspath(run_record),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(made, indent=2, default=str) + "\n"
    for path in paths:
        try:
            if urls.is_url(path):
                from dispatcher.storage.transfer import put_bytes

                put_bytes(path, text.encode())
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc} ({path})"
    return None


def made_by(
    paths: Sequence[str], roots: Sequence[str], class_dir: str
) -> tuple[str, dict[str, Any]] | None:
    """(run record path, configuration) of the run that last made outputs in `roots`: from
    their provenance records at `paths`, else (outputs of an older version) from the newest
    run records in `class_dir`."""
    for path in paths:
        try:
            made = json.loads(_read_text(path))
        except (OSError, ValueError):
            continue
        if isinstance(made, dict) and isinstance(made.get("config"), dict):
            return str(made.get("run_record")), made["config"]
    found = last_record(class_dir, list(roots))
    if found is None:
        return None
    path, record = found
    return path, record.get("config", {})


def _read_text(path: str) -> str:
    if urls.is_url(path):
        from dispatcher.storage.transfer import read_bytes

        return read_bytes(path).decode("utf-8")
    with open(path, encoding="utf-8") as fh:
        return fh.read()


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
