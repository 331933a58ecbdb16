"""Where outcomes go while a backbone runs items: once each, from any thread.

`ItemLedger` records plan items by position. `RowLedger` stands for a run over an own
dataloader (the plan's one item for rows known only once loaded): rows are numbered as
they come, and the item succeeds when every row did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dispatcher.execution.steps import Outcome
from dispatcher.task import Item

if TYPE_CHECKING:
    from dispatcher.report.reporter import Reporter

MAX_LISTED_ROW_FAILURES = 20


class Retries:
    """How often a failed item runs again (`--retries`), and how its last failure says so.

    Every engine that retries asks this one policy; where the item goes meanwhile (a
    queue, a later pass) is the engine's.
    """

    def __init__(self, limit: int, note: Callable[[str], None]) -> None:
        self.limit = limit
        self.note = note
        self.tries: dict[int, int] = {}

    def again(self, ref: int, outcome: Outcome, allowed: bool = True) -> bool:
        """Whether the failed `outcome` of item `ref` runs once more (said in a note); once
        no attempt is left (or none is `allowed`: a halting run), its error says how many
        it had."""
        if outcome.ok or outcome.malformed:
            return False  # malformed data reads the same way every time
        tried = self.tries.get(ref, 0)
        if allowed and tried < self.limit:
            self.tries[ref] = tried + 1
            self.note(f"retrying {outcome.key} ({tried + 1}/{self.limit}): {outcome.error}")
            return True
        if tried:
            outcome.error = f"{outcome.error} (failed {tried + 1} attempts)"
        return False


class ItemLedger:
    """Outcomes of plan items (by position), reported once each; thread-safe.

    With `retries`, a failed item is not reported while it has attempts left: it waits in
    `again` for the engine's next pass (`take_again`), and its final failure says how many
    attempts it had.
    """

    def __init__(self, items: Sequence[Item], reporter: Reporter, retries: int = 0) -> None:
        self.items = items
        self.reporter = reporter
        self.retries = Retries(retries, reporter.note)
        self.lock = threading.Lock()
        self.recorded = [False] * len(items)
        self.again: list[int] = []
        self.closed = False

    def key(self, ref: int) -> str:
        return self.items[ref][0]

    def record(self, ref: int, outcome: Outcome) -> None:
        with self.lock:
            if self.closed or self.recorded[ref]:
                return
            if self.retries.again(ref, outcome):
                self.again.append(ref)
                return
            self.recorded[ref] = True
            self.reporter.record_outcome(outcome)

    def take_again(self) -> list[int]:
        """The items to run once more, in plan order (and forget them until they fail again)."""
        with self.lock:
            again, self.again = sorted(self.again), []
        return again

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, completed: bool) -> None:
        self.close()


class RowLedger:
    """Rows of an own dataloader: one plan item for the whole run, failed if any row failed.

    Its rows are not retried: they are known only as the loader yields them.
    """

    def __init__(self, item: Item, reporter: Reporter) -> None:
        self.item = item
        self.reporter = reporter
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.ok = 0
        self.failures: list[tuple[str, str, str]] = []
        self.closed = False
        self.fatal: tuple[str, str] | None = None
        self.seen = 0

    def key(self, ref: int) -> str:
        return self.names.get(ref, f"row {ref}")

    def record(self, ref: int, outcome: Outcome) -> None:
        with self.lock:
            name = self.names.pop(ref, f"row {ref}")  # a recorded row needs its name no more
            if self.closed:
                return
            if outcome.ok:
                self.ok += 1
            else:
                self.failures.append((name, outcome.error or "failed", outcome.traceback or ""))

    def fail_all(self, error: str, tb: str) -> None:
        """The dataloader broke: the whole-run item fails with this error."""
        with self.lock:
            self.fatal = (error, tb)

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, completed: bool) -> None:
        self.close()
        if self.fatal is not None:
            error, tb = self.fatal
            self.reporter.record_outcome(Outcome(self.item[0], False, error, tb))
            return
        if not completed:
            return  # interrupted: the whole-run item counts as not run
        if not self.failures:
            self.reporter.record_outcome(Outcome(self.item[0], True))
            return
        total = self.ok + len(self.failures)
        first_key, first_error, _ = self.failures[0]
        listed = self.failures[:MAX_LISTED_ROW_FAILURES]
        details = "\n".join(f"--- {key}: {error}\n{tb}" for key, error, tb in listed)
        more = len(self.failures) - len(listed)
        if more:
            details += f"\n... and {more} more failed rows"
        self.reporter.record_outcome(
            Outcome(
                self.item[0],
                False,
                f"{len(self.failures)} of {total} rows failed; first {first_key}: {first_error}",
                details,
            )
        )

    def add_rows(self, names: Sequence[str | None]) -> list[int]:
        """Number the next rows (as they come); a row's name shows in failure messages."""
        with self.lock:
            first = self.seen
            self.seen += len(names)
        refs = list(range(first, first + len(names)))
        for ref, name in zip(refs, names, strict=True):
            if name is not None:
                self.names[ref] = name
        return refs

    def take_again(self) -> list[int]:
        return []


Ledger = ItemLedger | RowLedger
