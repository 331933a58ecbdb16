"""Progress, the end-of-run summary, failures.jsonl and the run record.

All of it goes to the terminal and the log directory, never into an output root.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from typing import Any, TextIO

from dispatcher.execution import Outcome
from dispatcher.outputs import atomic_write


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("shard-dispatch", "torch", "torch-npu", "pandas", "av", "omegaconf"):
        module = {"shard-dispatch": "dispatcher", "torch-npu": "torch_npu"}.get(dist, dist)
        if dist == "shard-dispatch" or module in sys.modules:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = "unknown"
    return versions


class Progress:
    """A tqdm bar on a terminal; plain periodic lines otherwise (SLURM log files)."""

    def __init__(self, total: int, stream: TextIO, interval: float) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self._last_line = self.start
        self._bar = None
        if stream.isatty() and total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="item", file=stream, dynamic_ncols=True, smoothing=0.1
            )

    def update(self, done: int, failed: int) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if failed:
                self._bar.set_postfix(failed=failed, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            rate = done / max(now - self.start, 1e-9)
            left = (self.total - done) / rate if rate else float("inf")
            eta = f"{left:.0f}s" if left != float("inf") else "?"
            print(
                f"dispatch: {done}/{self.total} items, {failed} failed, {rate:.1f} items/s, eta {eta}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Reporter:
    """Counts outcomes, shows progress, and writes failures and the run record."""

    def __init__(
        self,
        run_dir: str,
        total: int,
        record: dict[str, Any],
        stream: TextIO | None = None,
        interval: float = 15.0,
    ) -> None:
        self.run_dir = run_dir
        self.stream = stream or sys.stderr
        self.total = total
        self.succeeded = 0
        self.failed = 0
        self.failures_path = os.path.join(run_dir, "failures.jsonl")
        self.record_path = os.path.join(run_dir, "run.json")
        self.record = dict(record)
        self._failures: TextIO | None = None
        self._payloads: dict[str, Any] = {}
        self.started = time.monotonic()
        self.record["start"] = _now()
        self.record["versions"] = _versions()
        self.record["outcome"] = "running"
        os.makedirs(run_dir, exist_ok=True)
        self._write_record()
        self.progress = Progress(total, self.stream, interval)

    @property
    def ran(self) -> int:
        return self.succeeded + self.failed

    def remember_payloads(self, items: list[tuple[str, Any]]) -> None:
        """Keep payloads so failure records can show the item, not only its key."""
        self._payloads = {k: p for k, p in items if p is not None}

    def record_outcome(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.succeeded += 1
        else:
            self.failed += 1
            self._write_failure(outcome)
        self.progress.update(self.ran, self.failed)

    def _write_failure(self, outcome: Outcome) -> None:
        if self._failures is None:
            self._failures = open(self.failures_path, "a", encoding="utf-8")  # noqa: SIM115
        row = {
            "key": outcome.key,
            "item": self._payloads.get(outcome.key),
            "error": outcome.error,
            "traceback": outcome.traceback,
            "time": _now(),
        }
        self._failures.write(json.dumps(row, default=str) + "\n")
        self._failures.flush()

    def _write_record(self) -> None:
        with atomic_write(self.record_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.record, fh, indent=2, default=str)
            fh.write("\n")

    def finish(self, signum: int | None) -> int:
        """Print the summary, complete the run record; returns the exit code."""
        self.progress.close()
        if self._failures is not None:
            self._failures.close()
        wall = time.monotonic() - self.started
        counts = dict(self.record.get("counts", {}))
        counts.update(
            ran=self.ran,
            succeeded=self.succeeded,
            failed=self.failed,
            not_run=self.total - self.ran,
        )
        if signum is not None:
            code, outcome = 128 + signum, f"interrupted by {_signal_name(signum)}"
        elif self.failed:
            code, outcome = 1, "some items failed"
        else:
            code, outcome = 0, "success"
        self.record.update(
            counts=counts, end=_now(), wall_seconds=round(wall, 3), outcome=outcome, exit_code=code
        )
        self._write_record()
        rate = self.ran / wall if wall > 0 else 0.0
        print(
            f"dispatch: found {counts.get('found', '?')}, in shard {counts.get('in_shard', '?')}, "
            f"skipped {counts.get('skipped', '?')}, ran {self.ran} ({self.succeeded} ok, "
            f"{self.failed} failed), {wall:.2f}s, {rate:.1f} items/s — {outcome}",
            file=self.stream,
        )
        if self.failed:
            print(f"dispatch: failures listed in {self.failures_path}", file=self.stream)
        print(f"dispatch: run record {self.record_path}", file=self.stream, flush=True)
        return code


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
