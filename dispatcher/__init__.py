"""shard-dispatch: run a task over every item of a dataset, in shards, skipping what is done."""

from __future__ import annotations

from typing import Any

from dispatcher.config.placeholders import MIXIN_PLACEHOLDER, Mixin, Placeholder
from dispatcher.errors import MalformedInput, UsageError
from dispatcher.outputs import atomic_write
from dispatcher.sharding import HashShard, IndexShard
from dispatcher.task import Task, TorchTask

__all__ = [
    "MIXIN_PLACEHOLDER",
    "HashShard",
    "IndexShard",
    "MalformedInput",
    "Mixin",
    "Placeholder",
    "RunResult",
    "Task",
    "TorchTask",
    "UsageError",
    "atomic_write",
    "get_logger",
    "run",
]
__version__ = "0.1.0"

# Imported on first use, so `dispatch -hk` and `import dispatcher` stay light.
_LAZY = {
    "run": "dispatcher.api",
    "RunResult": "dispatcher.report.results",
    "get_logger": "dispatcher.report.task_log",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")
