"""What one run hands back to Python: its counts, its items' outcomes and its exit code.

Kept apart from the runner so `from dispatcher import RunResult` stays as light as
`import dispatcher`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.execution.steps import Outcome

__all__ = ["Counts", "Outcome", "PlanSummary", "RunResult"]


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


@dataclass
class PlanSummary:
    """What `plan_only` (`--plan`) finds, without running anything."""

    found: int
    in_shard: int
    shards: str
    done: int
    to_run: int
    force: bool
    keys: list[str]
    """The pending items' keys, in the order they would run."""
    duplicates: int = 0
    duplicate_keys: list[str] = field(default_factory=list)
    leftovers: int = 0
    """Killed attempts' staging and lock names a run would remove."""


@dataclass
class RunResult:
    """The outcome of `dispatcher.run(...)`; `exit_code` is what `dispatch` would exit with."""

    exit_code: int
    counts: Counts
    outcomes: list[Outcome] = field(default_factory=list)
    """One per item the backbone reported, in the order they finished."""
    run_dir: str | None = None
    record_path: str | None = None
    """The run record (`run.json`); None when nothing ran."""
    plan: PlanSummary | None = None
    """Set for `plan_only` runs."""

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
