"""One shard's line of `dispatch status`: what its table, `--json` and `--html` show, and
the run records they read."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ShardRow:
    shard: int
    items: int = 0
    done: int = 0
    outcome: str | None = None
    """The last run record's outcome ('success', 'interrupted by SIGTERM', 'running', ...)."""
    exit_code: int | None = None
    job: str | None = None
    """ARRAYJOB_TASK of the last run record, when it ran as a SLURM array task."""
    record: str | None = None
    queue: str | None = None
    """PENDING, RUNNING, ... while an array task of this shard is in `squeue`."""

    @property
    def to_run(self) -> int:
        return self.items - self.done

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "to_run": self.to_run}


Records = dict[int, tuple[str, dict[str, Any]]]
"""Shard -> (path, its newest run record)."""
