"""run.json on disk: room reserved when it is first written, a heartbeat while the run
goes, and its outcome written at the end even on a full disk.

A run killed by SIGKILL, a lost node or the OOM killer never writes its outcome: its
record says `running`. The heartbeat (`heartbeat`, and a progress sample in `samples`,
every `HEARTBEAT_SECONDS`) lets a reader tell a live run from a dead one on any host
(`liveness.py`; a pid cannot be checked across SLURM nodes). The reserve (whitespace
after the JSON, which every JSON reader skips) lets the last write overwrite the file in
place when the disk is full, so a full log directory cannot leave it at `running` either.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from dispatcher.outputs import atomic_write

RESERVE_BYTES = 16 * 1024
"""Room kept after the record for its final version (counts, statistics, log faults)."""
HEARTBEAT_SECONDS = 30.0
"""How often a running run rewrites its record with a heartbeat and a progress sample."""
SAMPLES = 200
"""At most this many progress samples are kept (every other one goes when there are more)."""


def now_text() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinity written as its text (`nan`, `inf`): what Python's
    json would write as `NaN` / `Infinity`, which strict JSON readers refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _encoded(record: dict[str, Any]) -> bytes:
    text = json.dumps(strict_json(record), indent=2, default=str, allow_nan=False)
    return (text + "\n").encode("utf-8")


class RecordFile:
    """One run's `run.json`, rewritten whole each time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.size = 0
        """The file's size as last written: what an in-place overwrite may use."""

    def write(self, record: dict[str, Any]) -> None:
        """Replace the record (atomically, room reserved after it); when the disk has no
        room for a new file, overwrite the old one in place if the record fits there."""
        data = _encoded(record)
        padded = data + b" " * RESERVE_BYTES + b"\n"
        try:
            with atomic_write(self.path) as tmp, open(tmp, "wb") as fh:
                fh.write(padded)
        except OSError:
            if not 0 < len(data) < self.size:
                raise
            with open(self.path, "r+b") as fh:
                fh.write(data + b" " * (self.size - len(data) - 1) + b"\n")
            return
        self.size = len(padded)


def add_sample(record: dict[str, Any], elapsed: float, done: int, failed: int) -> None:
    """A heartbeat: the time, and (seconds since start, items settled, items failed)."""
    record["heartbeat"] = now_text()
    samples = record.setdefault("samples", [])
    samples.append([round(elapsed, 1), done, failed])
    if len(samples) > SAMPLES:
        del samples[1::2]  # the first and the newest stay
