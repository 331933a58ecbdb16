"""What every execution engine shares: the `Backbone` base class and helpers to build one.

`Backbone` itself is defined in the core (`dispatcher/engines.py`), which calls engines
only through it; it is re-exported here for engine authors.
"""

from __future__ import annotations

import argparse
import contextlib
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from dispatcher.engines import (
    Backbone,
    ControlFlow,
    GraceExpired,
    Reporter,
    Stage,
    StageFailed,
    StopSignal,
    error_line,
    is_task_exit,
)

__all__ = [
    "Backbone",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "run_in_process",
]

T = TypeVar("T")


def _number(text: str, convert: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> T:
    """argparse type body: the message says what was expected, not the function's name."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type for counts that may be 0."""
    return _number(text, int, lambda v: v >= 0, "an integer 0 or more")


def positive_float(text: str) -> float:
    """argparse type for durations that must be more than 0."""
    return _number(text, float, lambda v: v > 0, "a number of seconds more than 0")


def add_retries_option(parser: argparse._ActionsContainer, failed: str, when: str = "") -> None:
    """`--retries N`, one option for every engine; `failed` says what fails an item there,
    `when` where a retry runs. Malformed input reads the same every time: never retried."""
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=0,
        metavar="N",
        help=f"run a failed item ({failed}) up to N more times{when}; malformed input is "
        "not retried (default: 0)",
    )


def run_in_process(
    stage: Stage, reporter: Reporter, stop: StopSignal, body: Callable[[], T], device: Any = None
) -> T | None:
    """`stage.setup(device)`, `body()`, `stage.teardown()` in this process, within the grace
    period.

    After a signal, the work in flight gets the grace period; then `GraceExpired` is raised
    inside it (its staged outputs are removed, its item counts as not run) and teardown
    still runs. A failing setup aborts the run, and so does task code exiting (`sys.exit()`)
    outside an item, and a stage that cannot compute (`StageFailed`: a model that failed to
    load); a failing teardown is noted. Returns what `body` returned, or None when setup
    failed, the run was aborted or the grace period expired.
    """
    stop.interrupt_in_place()
    try:
        try:
            stage.setup(device)
        except ControlFlow:
            raise
        except BaseException as exc:  # a task's sys.exit() too: the run cannot start
            reporter.abort(f"task setup failed: {error_line(exc)}", traceback.format_exc())
            return None
        try:
            return body()
        except StageFailed as exc:
            reporter.abort(exc.error, exc.tb)
            return None
        except BaseException as exc:
            if not is_task_exit(exc):
                raise
            # Task code outside any item (e.g. get_dataset) exited: the run stops, exit 1.
            reporter.abort(f"the task exited: {error_line(exc)}", traceback.format_exc())
            return None
        finally:
            with contextlib.suppress(GraceExpired):
                try:
                    stage.teardown()
                except ControlFlow:
                    raise
                except BaseException as exc:
                    reporter.note(f"task teardown failed: {error_line(exc)}")
    except GraceExpired:
        return None
    finally:
        stop.cancel_interrupt()
