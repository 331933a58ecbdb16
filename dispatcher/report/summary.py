"""The lines a run prints when it ends: the counts, what they hide, what failed, what next.

Composed apart from the `Reporter` that counts, so that what a user reads at the end of a
run is in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatcher.report import statistics

SHOWN_FAILURES = 5
"""How many failed items the summary names; failures.jsonl has them all."""
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

    record: dict[str, Any]
    succeeded: int
    failed: int
    elsewhere: int
    aborted: str | None
    failures: Named
    malformed_inputs: Named
    failures_path: str
    failures_not_written: int

    @property
    def ran(self) -> int: ...


def summary_lines(
    end: Counted, counts: dict[str, Any], outcome: str, wall: float, interrupted: bool
) -> list[str]:
    """The summary of the finished run `end` counted, one string per line, each
    beginning `dispatch: `."""
    rate = end.ran / wall if wall > 0 else 0.0
    not_run = f", not run {counts['not_run']}" if counts["not_run"] else ""
    if end.elsewhere:
        not_run = f", {end.elsewhere} made by another run{not_run}"
    lines = [
        f"found {counts.get('found', '?')}, in shard {counts.get('in_shard', '?')}, "
        f"skipped {counts.get('skipped', '?')}, ran {end.ran} ({end.succeeded} ok, "
        f"{end.failed} failed){not_run}, {wall:.2f}s, {rate:.1f} items/s — {outcome}"
    ]
    lines += _notes(end, counts)
    lines += [
        f"statistics: {line}" for line in statistics.describe(end.record.get("statistics", {}))
    ]
    lines += [f"failed {line}" for line in end.failures.lines]
    if end.failures.count > len(end.failures.lines):
        lines.append(f"... and {end.failures.count - len(end.failures.lines)} more")
    lines += [f"error: {line}" for line in end.malformed_inputs.lines]
    if end.malformed_inputs.count > len(end.malformed_inputs.lines):
        more = end.malformed_inputs.count - len(end.malformed_inputs.lines)
        lines.append(f"... and {more} more malformed inputs")
    if end.failed or end.aborted:
        lines.append(f"failures listed in {end.failures_path}")
    if end.malformed_inputs.count:
        lines.append(
            "fix or remove the malformed inputs and run the same command again: "
            "only what is missing is made"
        )
    if interrupted:
        lines.append("run the same command again to finish the remaining items")
    return [f"dispatch: {line}" for line in lines]


def _notes(end: Counted, counts: dict[str, Any]) -> list[str]:
    """Lines about items the counts alone would hide."""
    notes = []
    if counts.get("duplicates"):
        keys = ", ".join(map(str, end.record.get("duplicate_keys", [])))
        notes.append(
            f"{counts['duplicates']} duplicate items ran once (same key as an earlier item: {keys})"
        )
    if end.failures_not_written:
        notes.append(
            f"{end.failures_not_written} failure(s) could not be written to {end.failures_path}"
        )
    return notes
