"""What one run hands back to Python: its counts, its items' outcomes and its exit code.

Kept apart from the runner so `from dispatcher import RunResult` stays as light as
`import dispatcher`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.execution.steps import Outcome
from dispatcher.report.counts import Counts

__all__ = ["Counts", "Outcome", "PlanSummary", "RunResult"]


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
    limited_from: int | None = None
    """Pending items before `--limit` kept the first `to_run` of them."""


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
