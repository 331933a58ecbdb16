"""The lines a run prints when it ends: the counts, what they hide, what failed, what next.

Composed apart from the `Reporter` that counts, so that what a user reads at the end of a
run is in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatcher.report import statistics
from dispatcher.report.counts import Counts
from dispatcher.report.failure_groups import FailureGroups

SHOWN_FAILURES = 5
"""How many kinds of failure the summary names; failures.jsonl has every item."""
SHOWN_MALFORMED = 20
"""How many malformed inputs the summary names, one `error:` line each."""


@dataclass
class Named:
    """The first few of a kind of line, and how many there were in all."""

    limit: int
    lines: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, line: str) -> None:
        self.count += 1
        if len(self.lines) < self.limit:
            self.lines.append(line)


class Counted(Protocol):
    """What the summary reads of a finished run (the `Reporter` that counted it)."""

    counts: Counts
    record: dict[str, Any]
    aborted: str | None
    failures: FailureGroups
    malformed_inputs: Named
    failures_path: str
    failures_not_written: int


def summary_lines(end: Counted, outcome: str, wall: float, interrupted: bool) -> list[str]:
    """The summary of the finished run `end` counted, one string per line, each
    beginning `dispatch: `."""
    counts = end.counts
    lines = [_counts_line(counts, outcome, wall), *_notes(end)]
    lines += [
        f"statistics: {line}" for line in statistics.describe(end.record.get("statistics", {}))
    ]
    lines += end.failures.lines(SHOWN_FAILURES)
    lines += [f"error: {line}" for line in end.malformed_inputs.lines]
    if end.malformed_inputs.count > len(end.malformed_inputs.lines):
        more = end.malformed_inputs.count - len(end.malformed_inputs.lines)
        lines.append(f"... and {more} more malformed inputs")
    if counts.failed or end.aborted:
        lines.append(f"failures listed in {end.failures_path}")
    if end.malformed_inputs.count:
        lines.append(
            "fix or remove the malformed inputs and run the same command again: "
            "only what is missing is made"
        )
    limited = end.record.get("limited")
    if limited:
        left = limited["pending"] - counts.to_run
        lines.append(
            f"a trial run: --limit {limited['limit']} ran the first {counts.to_run} of "
            f"{limited['pending']} pending items; run without --limit for the other {left}"
        )
    if interrupted:
        lines.append("run the same command again to finish the remaining items")
    return [f"dispatch: {line}" for line in lines]


def _counts_line(counts: Counts, outcome: str, wall: float) -> str:
    """The summary's first line: what the plan found and what became of it."""
    rate = counts.ran / wall if wall > 0 else 0.0
    not_run = f", not run {counts.not_run}" if counts.not_run else ""
    if counts.made_elsewhere:
        not_run = f", {counts.made_elsewhere} made by another run{not_run}"
    return (
        f"found {counts.found}, in shard {counts.in_shard}, skipped {counts.skipped}, "
        f"ran {counts.ran} ({counts.succeeded} ok, {counts.failed} failed){not_run}, "
        f"{wall:.2f}s, {rate:.1f} items/s — {outcome}"
    )


def _notes(end: Counted) -> list[str]:
    """Lines about items the counts alone would hide."""
    notes = []
    if end.counts.duplicates:
        keys = ", ".join(map(str, end.record.get("duplicate_keys", [])))
        notes.append(
            f"{end.counts.duplicates} duplicate items ran once "
            f"(same key as an earlier item: {keys})"
        )
    if end.failures_not_written:
        notes.append(
            f"{end.failures_not_written} failure(s) could not be written to {end.failures_path}"
        )
    return notes
