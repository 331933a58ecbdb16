"""Whether a run whose record says `running` still runs: what `dispatch status` shows.

Its heartbeat (`run_record.py`) is the answer on any host: a record whose last heartbeat
is older than `STALE_AFTER` belongs to a run that was killed (SIGKILL, a lost node, the
OOM killer). On the host that wrote it, a process that is gone says so at once.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from dispatcher.environment import process_alive
from dispatcher.report.run_record import HEARTBEAT_SECONDS

STALE_AFTER = 4 * HEARTBEAT_SECONDS


def shown_outcome(record: dict[str, Any], now: dt.datetime | None = None) -> str | None:
    """The record's outcome, or `killed (...)` for a `running` record whose run is gone."""
    outcome = record.get("outcome")
    if outcome != "running":
        return outcome
    beat = record.get("heartbeat") or record.get("start")
    pid = record.get("pid")
    here = record.get("host") == os.uname().nodename and isinstance(pid, int)
    if here and not process_alive(pid):
        return f"killed (last heartbeat {beat})"
    try:
        last = dt.datetime.fromisoformat(str(beat))
    except ValueError:
        return outcome
    now = now or dt.datetime.now().astimezone()
    if (now - last).total_seconds() > STALE_AFTER:
        return f"killed (no heartbeat since {beat})"
    return outcome
