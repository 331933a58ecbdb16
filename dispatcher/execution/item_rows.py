"""Items that load as several rows (a row range's rows, for a packed output): their rows
batched across items, each row's value written into its item's one staged output.

Engine-agnostic: an engine that batches (the torch backbone) loads a whole item where
data loads (`Stage.load` returns its `ItemRows`); where it computes, `RowBatcher` cuts the loaded items' rows into batches of the run's batch size,
an item's rows in order and a batch often holding the end of one item and the start of
the next; where it writes, `OpenItems` opens an item's staged outputs at its
first row, writes each row's value there in order, and commits at its last row: one
outcome per item. A failed batch fails every item with a row in it (the rest of their
rows are dropped); a run that stops leaves its open items uncommitted (their staging is
removed) and without an outcome, so the next run makes them.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dispatcher.execution.signals import ControlFlow
from dispatcher.execution.steps import Outcome, error_line, failure
from dispatcher.outputs import DoneElsewhere
from dispatcher.stage import Stage

Entry = tuple[int, bool, bool]
"""(item ref, whether a row of the batch is its, whether it is the item's last entry)."""


@dataclass
class RowsJob:
    """A computed batch of items' rows, waiting for postprocessing."""

    entries: list[Entry]
    batch: Any
    result: Any
    event: Any
    error: tuple[str, str] | None = None
    """(error line, traceback) of the batch's collate or compute: its items fail."""


class RowBatcher:
    """Loaded items' rows, in order, cut into batches of `size` rows (main thread)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.entries: list[Entry] = []
        self.rows: list[Any] = []

    def add(self, refs: list[int], items: list[Any]) -> Iterator[tuple[list[Entry], list[Any]]]:
        """Take loaded items (`refs`, each one's rows); yield every batch that filled."""
        for ref, rows in zip(refs, items, strict=True):
            if not rows:  # an item without rows: an empty output, committed in turn
                self.entries.append((ref, False, True))
                continue
            last = len(rows) - 1
            for i, row in enumerate(rows):
                self.entries.append((ref, True, i == last))
                self.rows.append(row)
                if len(self.rows) == self.size:
                    yield self.take()

    def take(self) -> tuple[list[Entry], list[Any]]:
        """The rows gathered so far (the last, short batch at the end of a pass)."""
        taken = self.entries, self.rows
        self.entries, self.rows = [], []
        return taken


class OpenItems:
    """The staged outputs of items whose rows are being written (postprocessing thread)."""

    def __init__(
        self, stage: Stage, key: Callable[[int], str], record: Callable[..., None]
    ) -> None:
        self.stage, self.key, self.record = stage, key, record
        self.open: dict[int, Any] = {}
        self.outputs: dict[int, dict[str, Any]] = {}
        self.dropped: set[int] = set()
        """Items settled before their last row (failed, made elsewhere): rows dropped."""

    def write(self, job: RowsJob, halt: Callable[[], bool]) -> None:
        """Each entry of a computed batch into its item; an item's last entry commits it."""
        values, error = self._values(job)
        k = 0
        for ref, has_row, last in job.entries:
            if halt():
                return  # the run stopped: open items are abandoned, not committed
            value = None
            if has_row:
                value = values[k] if values is not None else None
                k += 1
            if ref in self.dropped:
                if last:
                    self.dropped.discard(ref)
                continue
            self._write(ref, value if has_row else _NO_ROW, last, error)

    def _values(self, job: RowsJob) -> tuple[list[Any] | None, tuple[str, str] | None]:
        rows = sum(1 for _, has_row, _ in job.entries if has_row)
        if job.error is not None or not rows:
            return None, job.error
        try:
            if job.event is not None:
                job.event.synchronize()
            values = self.stage.item_rows(job.batch, job.result, rows)
        except ControlFlow:
            raise
        except BaseException as exc:
            return None, (f"postprocessing: {error_line(exc)}", traceback.format_exc())
        return values, None

    def _write(self, ref: int, value: Any, last: bool, error: tuple[str, str] | None) -> None:
        key = self.key(ref)
        try:
            outputs = self._entered(ref, key)
            if error is not None:
                raise _BatchFailed(error)
            if value is not _NO_ROW:
                self.stage.write_item_row(outputs, value)
            if last:
                self._close(ref, None)
                self.record(ref, Outcome(key, True))
        except DoneElsewhere:
            self._settle(ref, last, Outcome(key, True, elsewhere=True))
        except ControlFlow:
            raise
        except _BatchFailed as failed:
            self._close(ref, failed)
            line, tb = failed.error
            self._settle(ref, last, Outcome(key, False, line, tb))
        except BaseException as exc:
            self._close(ref, exc)
            self._settle(ref, last, failure(key, exc))

    def _entered(self, ref: int, key: str) -> dict[str, Any]:
        outputs = self.outputs.get(ref)
        if outputs is None:
            manager = self.stage.source.staged(key, self.stage.force)
            outputs = manager.__enter__()
            self.open[ref], self.outputs[ref] = manager, outputs
        return outputs

    def _close(self, ref: int, exc: BaseException | None) -> None:
        manager = self.open.pop(ref, None)
        self.outputs.pop(ref, None)
        if manager is None:
            return
        if exc is None:
            manager.__exit__(None, None, None)  # commits; its failure is the item's
        else:
            # The item failed already: what its staging left is a leftover.
            with contextlib.suppress(Exception):
                manager.__exit__(type(exc), exc, exc.__traceback__)

    def _settle(self, ref: int, last: bool, outcome: Outcome) -> None:
        self.record(ref, outcome)
        if not last:
            self.dropped.add(ref)

    def abandon(self) -> None:
        """Leave every open item uncommitted (the run stopped before its last row)."""
        for ref in list(self.open):
            self._close(ref, _Abandoned("the run stopped before the item's last row"))


class _BatchFailed(Exception):
    def __init__(self, error: tuple[str, str]) -> None:
        super().__init__(error[0])
        self.error = error


class _Abandoned(Exception):
    pass


_NO_ROW = object()
