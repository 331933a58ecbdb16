"""A run's numbers, one object from the plan to the run record to the summary.

The plan's numbers fill it (`Counts.planned`), the `Reporter` counts outcomes into the same
object, the run record's `counts` is its serialisation (`to_record`), the summary reads it,
and `dispatcher.run(...)` hands it back as `RunResult.counts`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

PLANNED = ("found", "in_shard", "skipped", "to_run")
"""The record's keys known once the plan is made, before any item runs."""
COUNTED = ("ran", "succeeded", "failed", "not_run")
"""The record's keys known once the run has ended."""
WHEN_ANY = ("duplicates", "made_elsewhere", "malformed_inputs")
"""Keys the record holds only when they are not 0."""


class PlanNumbers(Protocol):
    """What `Counts.planned` reads of a plan (`dispatcher.plan.Plan`)."""

    found: int
    in_shard: int
    done: int
    duplicates: int

    @property
    def to_run(self) -> int: ...


@dataclass
class Counts:
    """The run's numbers, as its summary line and run record give them."""

    found: int = 0
    in_shard: int = 0
    skipped: int = 0
    """Done before the run started (ignored under `force`)."""
    to_run: int = 0
    ran: int = 0
    succeeded: int = 0
    failed: int = 0
    not_run: int = 0
    """Pending items left untouched (a signal, an aborted run)."""
    made_elsewhere: int = 0
    """Completed by another run while this one ran."""
    duplicates: int = 0
    malformed_inputs: int = 0
    """Failed items whose input is malformed (the run exits 2)."""

    @classmethod
    def planned(cls, plan: PlanNumbers) -> Counts:
        """A plan's numbers, before anything ran: every pending item not run yet."""
        return cls(
            found=plan.found,
            in_shard=plan.in_shard,
            skipped=plan.done,
            to_run=plan.to_run,
            not_run=plan.to_run,
            duplicates=plan.duplicates,
        )

    def add_succeeded(self, count: int = 1) -> None:
        self.succeeded += count
        self.ran += count

    def add_failed(self, malformed: bool = False) -> None:
        self.failed += 1
        self.ran += 1
        self.malformed_inputs += int(malformed)

    def add_made_elsewhere(self) -> None:
        self.made_elsewhere += 1

    @property
    def settled(self) -> int:
        """Pending items whose outcome is known: ran here or made by another run."""
        return self.ran + self.made_elsewhere

    def settle(self) -> None:
        """At the run's end: the pending items neither run nor made elsewhere are not run."""
        self.not_run = self.to_run - self.settled

    def to_record(self, finished: bool = True) -> dict[str, int]:
        """The run record's `counts`: the plan's numbers, then (`finished`) the run's; the
        keys of `WHEN_ANY` only when not 0."""
        names = [*PLANNED, "duplicates"]
        if finished:
            names += [*COUNTED, "made_elsewhere", "malformed_inputs"]
        return {
            name: getattr(self, name)
            for name in names
            if name not in WHEN_ANY or getattr(self, name)
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Counts:
        """The counts a run record's `counts` holds (keys it lacks are 0)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in record.items() if k in names})
