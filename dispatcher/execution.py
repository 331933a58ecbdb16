"""Running one item: the same code path for every backbone, in whichever process it runs."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.outputs import DoneElsewhere
from dispatcher.task import Item, Task


@dataclass
class Outcome:
    """What became of one item; travels from workers to the parent."""

    key: str
    ok: bool
    error: str | None = None
    traceback: str | None = None
    elsewhere: bool = False
    """Completed by another run since the plan looked (ok, but not made here)."""


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def attempt(key: str, call: Callable[[], object]) -> Outcome:
    """Run `call`; an exception becomes a failed Outcome with its one-line error and traceback."""
    try:
        call()
    except DoneElsewhere:
        return Outcome(key, True, elsewhere=True)
    except Exception as exc:
        return Outcome(key, False, error_line(exc), traceback.format_exc())
    return Outcome(key, True)


def run_one(task: Task, item: Item) -> Outcome:
    """Run one item; an exception becomes a failed Outcome, never a crashed run."""
    key, payload = item
    return attempt(key, lambda: task.run_item(key, payload))
