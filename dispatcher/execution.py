"""Running one item: the same code path for every backbone, in whichever process it runs."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from dispatcher.task import Item, Task


@dataclass
class Outcome:
    """What became of one item; travels from workers to the parent."""

    key: str
    ok: bool
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_one(task: Task, item: Item) -> Outcome:
    """Run one item; an exception becomes a failed Outcome, never a crashed run."""
    key, payload = item
    start = time.perf_counter()
    try:
        task.run_item(key, payload)
    except Exception as exc:
        return Outcome(
            key, False, error_line(exc), traceback.format_exc(), time.perf_counter() - start
        )
    return Outcome(key, True, seconds=time.perf_counter() - start)
