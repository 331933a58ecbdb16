"""Running one item: the same code path for every backbone, in whichever process it runs."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.outputs import DoneElsewhere
from dispatcher.signals import ControlFlow
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
    """`Type: first line`; a task's `sys.exit()` and the like say who raised them."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return f"{line} (raised by the task)" if is_task_exit(exc) else line


def is_task_exit(exc: BaseException) -> bool:
    """A BaseException that is not an Exception and not the dispatcher's own control flow.

    Where task code runs, these are the task's failures like any exception: catching only
    `Exception` there would let `sys.exit(0)` end a run as a success with items not run.
    """
    return not isinstance(exc, (Exception, ControlFlow))


def attempt(key: str, call: Callable[[], object]) -> Outcome:
    """Run `call`; an exception becomes a failed Outcome with its one-line error and traceback.

    So does a task's SystemExit, KeyboardInterrupt or GeneratorExit; only the dispatcher's
    own `ControlFlow` passes through.
    """
    try:
        call()
    except DoneElsewhere:
        return Outcome(key, True, elsewhere=True)
    except ControlFlow:
        raise
    except BaseException as exc:
        return Outcome(key, False, error_line(exc), traceback.format_exc())
    return Outcome(key, True)


def run_one(task: Task, item: Item) -> Outcome:
    """Run one item; an exception becomes a failed Outcome, never a crashed run."""
    key, payload = item
    return attempt(key, lambda: task.run_item(key, payload))
