"""Running items: the one code path of every backbone, in whichever process it runs.

`run_batch` runs items of a stage in this process, one outcome per item; an engine that
places the steps apart (loading in DataLoader workers, computing on a device, writing on
a thread) calls its parts, `load_row`, `compute` and `write`, where it places them.
Failures become outcomes, never a crashed run; only the dispatcher's `ControlFlow` passes.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from dispatcher.errors import MalformedInput
from dispatcher.execution.signals import ControlFlow
from dispatcher.items import Item
from dispatcher.outputs import DoneElsewhere
from dispatcher.plan import pending_rows

if TYPE_CHECKING:
    from dispatcher.stage import Stage


@dataclass
class Outcome:
    """What became of one item; travels from workers to the parent."""

    key: str
    ok: bool
    error: str | None = None
    traceback: str | None = None
    elsewhere: bool = False
    """Completed by another run since the plan looked (ok, but not made here)."""
    malformed: str | None = None
    """What is malformed in the item's input (a `MalformedInput`'s message), else None.
    Decided by the exception's type where it was raised (`failure`) and carried as data
    from every engine's workers: a subclass is malformed input, a class that is only
    named like it is not."""


def failure(key: str, exc: BaseException) -> Outcome:
    """The failed Outcome of item `key` alone, which raised `exc` (call inside its `except`).

    A failure of several items at once (`failed`: a batch's compute or collate) is never
    malformed input: which item's data was at fault is not known.
    """
    error = error_line(exc)
    return Outcome(key, False, error, traceback.format_exc(), malformed=malformed_message(exc))


def malformed_message(exc: BaseException) -> str | None:
    """A `MalformedInput`'s (or a subclass's) one-line message; None for any other exception."""
    if not isinstance(exc, MalformedInput):
        return None
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
        return failure(key, exc)
    return Outcome(key, True)


class StageFailed(ControlFlow):
    """Nothing can compute (a model that failed to load): the run stops, items stay pending."""

    def __init__(self, error: str, tb: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.tb = tb


def failed(keys: Sequence[str], error: str, tb: str | None) -> list[Outcome]:
    return [Outcome(key, False, error, tb) for key in keys]


# --- the steps, for an engine that places them apart -----------------------------------------


def load_row(stage: Stage, key: str, payload: Any) -> Any:
    """An item's row (raises: the caller fails that item alone)."""
    return stage.load(key, payload)


def compute(stage: Stage, keys: list[str], batch: Any) -> tuple[Any, list[Outcome]]:
    """The batch's result, and no outcomes; or None and a failed outcome per key.

    `stage.warm_up()` comes first (once): its failure ends the run (`StageFailed`).
    """
    stage.warm_up()
    try:
        return stage.compute(batch, len(keys)), []
    except ControlFlow:
        raise
    except BaseException as exc:  # a task's sys.exit() too: the batch's failure
        name = stage.compute_step
        return None, failed(keys, f"{name}: {error_line(exc)}", traceback.format_exc())


def write(
    stage: Stage,
    keys: list[str],
    batch: Any,
    result: Any,
    halt: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Each item's result written inside its staged outputs, committed item by item.

    Row by row, `halt()` is asked before each row: once true, the rest are not written
    and get no outcome (the list is shorter; a rerun makes them).

    A stage writing row by row commits each row alone (one failing row fails only its
    item). One writing a batch in one call gets every item claimed first (never waiting
    while holding one), then the staged outputs of all, as lists under their usual names;
    each item's commit is its own outcome.
    """
    if not stage.writes_rows_together:
        n = len(keys)
        outcomes = []
        for i, key in enumerate(keys):
            if halt is not None and halt():
                break
            outcomes.append(attempt(key, partial(_write_row, stage, i, n, key, batch, result)))
        return outcomes
    with contextlib.ExitStack() as claims:
        try:
            claims.enter_context(stage.source.claim_all(keys))
        except Exception as exc:
            return failed(keys, error_line(exc), traceback.format_exc())
        return _write_rows_claimed(stage, keys, batch, result)


def _write_row(stage: Stage, i: int, n: int, key: str, batch: Any, result: Any) -> None:
    with stage.source.staged(key, stage.force) as outputs:
        stage.write_row(i, n, stage.row(batch, i), result, outputs)


def _write_rows_claimed(stage: Stage, keys: list[str], batch: Any, result: Any) -> list[Outcome]:
    entered: list[Any] = []
    outputs: list[dict[str, Any]] = []
    staged, remake = stage.source.staged, stage.force
    try:
        for key in keys:
            manager = staged(key, remake)
            outputs.append(manager.__enter__())
            entered.append(manager)
        names = list(outputs[0]) if outputs else []
        stage.write_rows(
            keys, batch, result, {name: [o.get(name) for o in outputs] for name in names}
        )
    except BaseException as exc:
        info = sys.exc_info()
        for manager in reversed(entered):
            with contextlib.suppress(Exception):
                manager.__exit__(*info)  # staged outputs removed, also on GraceExpired
        if isinstance(exc, ControlFlow):
            raise
        step = f"{stage.write_step}: " if stage.write_step else ""
        return failed(keys, step + error_line(exc), traceback.format_exc())
    return [
        attempt(key, partial(manager.__exit__, None, None, None))
        for key, manager in zip(keys, entered, strict=True)
    ]


# --- the one way to run items ----------------------------------------------------------------


def run_item(stage: Stage, item: Item) -> Outcome:
    """One item of a stage that is not batched: load, then write inside its staged outputs."""
    key, payload = item
    return attempt(key, partial(_load_and_write, stage, key, payload))


def _load_and_write(stage: Stage, key: str, payload: Any) -> None:
    row = stage.load(key, payload)
    with stage.source.staged(key, stage.force) as outputs:
        stage.write_row(0, 1, row, None, outputs)


def run_batch(stage: Stage, items: Sequence[Item]) -> list[Outcome]:
    """Run items in this process, one outcome per item, in their order: what every
    backbone calls.

    A stage that is not batched runs item by item (nothing extra per item); a batched one
    loads each item (a failing load fails that item), collates, computes and writes.
    """
    if not stage.batched:
        return [run_item(stage, item) for item in items]
    if stage.expands_items:
        return [run_expanded(stage, item) for item in items]
    outcomes: list[Outcome | None] = [None] * len(items)
    loaded: list[int] = []
    rows: list[Any] = []
    for i, (key, payload) in enumerate(items):
        try:
            rows.append(load_row(stage, key, payload))
            loaded.append(i)
        except ControlFlow:
            raise
        except BaseException as exc:
            outcomes[i] = failure(key, exc)
    if loaded:
        done = run_loaded(stage, [items[i][0] for i in loaded], rows)
        for i, outcome in zip(loaded, done, strict=True):
            outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]  (every position was filled)


def run_expanded(stage: Stage, item: Item) -> Outcome:
    """One item of a stage that `expands_items`, alone: its rows loaded, computed in batches
    of the stage's size, each row's value written into the item's staged outputs."""
    key, payload = item
    return attempt(key, partial(_expand_and_write, stage, key, payload))


def _expand_and_write(stage: Stage, key: str, payload: Any) -> None:
    rows = stage.load(key, payload)
    size = max(1, stage.default_batch_size)
    with stage.source.staged(key, stage.force) as outputs:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            batch = stage.collate(chunk)
            stage.warm_up()
            result = stage.compute(batch, len(chunk))
            for value in stage.item_rows(batch, result, len(chunk)):
                stage.write_item_row(outputs, value)


def run_loaded(stage: Stage, keys: list[str], rows: list[Any]) -> list[Outcome]:
    """Collate loaded rows, then `run_collated`; one outcome per key, in key order."""
    try:
        batch = stage.collate(rows)
    except ControlFlow:
        raise
    except BaseException as exc:
        return failed(keys, f"collate: {error_line(exc)}", traceback.format_exc())
    return run_collated(stage, keys, batch)


def run_collated(stage: Stage, keys: list[str], batch: Any) -> list[Outcome]:
    """Drop rows found done after loading, compute the rest, write each; in key order."""
    keep, batch, settled = after_load(stage, keys, batch)
    if not settled:
        return compute_and_write(stage, keys, batch)
    outcomes: list[Outcome | None] = [None] * len(keys)
    for i, outcome in settled:
        outcomes[i] = outcome
    if keep:
        kept = compute_and_write(stage, [keys[i] for i in keep], batch)
        for i, outcome in zip(keep, kept, strict=True):
            outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]  (every position was filled)


def after_load(
    stage: Stage, keys: list[str], batch: Any
) -> tuple[list[int], Any, list[tuple[int, Outcome]]]:
    """(rows left to compute, their batch, (row, outcome) of rows settled here).

    Rows of own data that were not checked before loading go through the plan's done
    check now (`plan.pending_rows`); a failing check fails the batch's rows.
    """
    every = list(range(len(keys)))
    if not stage.source.checks_after_load:
        return every, batch, []
    try:
        keep, done = pending_rows(stage, batch, len(keys))
    except ControlFlow:
        raise
    except BaseException as exc:
        error, tb = f"done-check failed: {error_line(exc)}", traceback.format_exc()
        return [], batch, [(i, Outcome(keys[i], False, error, tb)) for i in every]
    settled = [(i, Outcome(keys[i], True)) for i in done]
    if not done:
        return keep, batch, []
    return keep, (stage.select(batch, keep) if keep else batch), settled


def compute_and_write(stage: Stage, keys: list[str], batch: Any) -> list[Outcome]:
    result, failures = compute(stage, keys, batch)
    if failures:
        return failures
    return write(stage, keys, batch, result)
