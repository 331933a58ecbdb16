"""When a run stops itself for its failures, rather than fail a million items one by one.

`--max-failures N` stops once N items failed. Without it, a run whose first `FIRST_ITEMS`
items to finish all failed stops too: that is a fault in the task or its setup far more
often than in the data (`--keep-going` runs every item anyway). Malformed inputs do not
count toward that guard: a run over bad data names every bad input in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.report.counts import Counts

FIRST_ITEMS = 20
"""How many items must finish, every one failed, before a run stops on its own."""


@dataclass(frozen=True)
class FailFast:
    max_failures: int | None = None
    keep_going: bool = False

    def reason(self, counts: Counts) -> str | None:
        """Why the run stops now, after a failure was counted; None: it goes on."""
        if self.max_failures is not None and counts.failed >= self.max_failures:
            return f"--max-failures {self.max_failures}: {counts.failed} items failed"
        task_failures = counts.failed - counts.malformed_inputs
        if (
            not self.keep_going
            and self.max_failures is None
            and counts.ran == FIRST_ITEMS
            and task_failures == FIRST_ITEMS
        ):
            return (
                f"the first {FIRST_ITEMS} items to finish all failed (a fault that fails "
                "every item?); --keep-going runs every item anyway"
            )
        return None
