"""Progress, the end-of-run summary, failures.jsonl and the run record.

All of it goes to the terminal and the log directory, never into an output root.
Backbones call `record_outcome` once per item (in the parent process), `tick` while they
wait, `note` for a line of their own, and `abort` when the run cannot go on at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import sys
import time
from typing import Any, TextIO

from dispatcher.execution import Outcome, error_line, is_task_exit
from dispatcher.outputs import atomic_write
from dispatcher.signals import signal_exit_code, signal_name

DEFAULT_LOG_INTERVAL = 15.0
"""Seconds between progress lines when stderr is not a terminal (SLURM log files)."""


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


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


SHOWN_FAILURES = 5
"""How many failed items the summary names; failures.jsonl has them all."""


class Progress:
    """A tqdm bar on a terminal; plain periodic lines otherwise (SLURM log files)."""

    def __init__(self, total: int, stream: TextIO, interval: float) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self._last_line = self.start
        self._done = 0
        self._failed = 0
        self._bar: Any = None
        if total and _isatty(stream):
            from tqdm import tqdm

            # No monitor thread: worker processes may be forked from this one.
            tqdm.monitor_interval = 0
            self._bar = tqdm(
                total=total,
                unit="item",
                file=stream,
                dynamic_ncols=True,
                smoothing=0.1,
                desc="dispatch",
            )
            self._bar.set_postfix(failed=0, refresh=False)

    def update(self, done: int, failed: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._done)
            if failed != self._failed:
                self._bar.set_postfix(failed=failed, refresh=False)
        self._done, self._failed = done, failed
        self.tick()

    def tick(self) -> None:
        """Print a progress line if the interval has passed (no-op with a bar)."""
        if self._bar is not None:
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        done, failed = self._done, self._failed
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate else float("inf")
        share = 100.0 * done / self.total if self.total else 100.0
        return (
            f"dispatch: {done}/{self.total} items ({share:.1f}%), {failed} failed, "
            f"{rate:.1f} items/s, eta {_duration(left)}"
        )

    def write(self, text: str) -> None:
        """A line of text that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Counts outcomes, shows progress, and writes failures and the run record."""

    def __init__(
        self,
        run_dir: str,
        total: int,
        record: dict[str, Any],
        stream: TextIO | None = None,
        interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.run_dir = run_dir
        self.stream = stream or sys.stderr
        self.total = total
        self.succeeded = 0
        self.failed = 0
        self.failures_path = os.path.join(run_dir, "failures.jsonl")
        self.record_path = os.path.join(run_dir, "run.json")
        self.record = dict(record)
        self.aborted: str | None = None
        self._failures: TextIO | None = None
        self._items: list[tuple[str, Any]] = []
        self._payloads: dict[str, Any] | None = None
        self._first_failures: list[str] = []
        self.started = time.monotonic()
        self.record["start"] = _now()
        self.record["host"] = socket.gethostname()
        self.record["pid"] = os.getpid()
        self.record["versions"] = _versions()
        self.record["outcome"] = "running"
        os.makedirs(run_dir, exist_ok=True)
        self._write_record()
        self.progress = Progress(total, self.stream, interval)

    @property
    def ran(self) -> int:
        return self.succeeded + self.failed

    def remember_payloads(self, items: list[tuple[str, Any]]) -> None:
        """Where failure records find an item's payload (looked up on the first failure)."""
        self._items = items

    def record_outcome(self, outcome: Outcome) -> None:
        """Count one finished item (call once per item, in the parent process)."""
        if outcome.ok:
            self.succeeded += 1
        else:
            self.failed += 1
            self._write_failure(outcome.key, outcome.error, outcome.traceback)
            if len(self._first_failures) < SHOWN_FAILURES:
                self._first_failures.append(f"{outcome.key}: {outcome.error}")
        self.progress.update(self.ran, self.failed)

    def tick(self) -> None:
        """Let a waiting backbone keep the periodic progress lines going."""
        self.progress.tick()

    def note(self, text: str) -> None:
        """A line for the user (a worker replaced, an item retried), beside the progress."""
        self.progress.write(f"dispatch: {text}")

    def abort(self, error: str, traceback: str | None = None) -> None:
        """The run cannot go on (e.g. the task's setup failed): recorded once, exit code 1.

        Items not run stay pending; a rerun after the fix picks them up.
        """
        if self.aborted is None:
            self.aborted = error
            self._write_failure(None, error, traceback)
            self.note(f"error: {error}")

    def _payload(self, key: str | None) -> Any:
        if key is None:
            return None
        if self._payloads is None:
            self._payloads = {k: p for k, p in self._items if isinstance(p, dict)}
        return self._payloads.get(key)

    def _write_failure(self, key: str | None, error: str | None, traceback: str | None) -> None:
        if self._failures is None:
            self._failures = open(self.failures_path, "a", encoding="utf-8")  # noqa: SIM115
        row = {
            "key": key,
            "item": self._payload(key),
            "error": error,
            "traceback": traceback,
            "time": _now(),
        }
        self._failures.write(json.dumps(row, default=str) + "\n")
        self._failures.flush()

    def _write_record(self) -> None:
        with atomic_write(self.record_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.record, fh, indent=2, default=str)
            fh.write("\n")

    def finish(self, signum: int | None) -> int:
        """Print the summary, complete the run record; returns the exit code.

        Called from a `finally:` block, so an exception escaping the backbone is seen
        here and recorded as the outcome before it propagates; so is a task's `sys.exit()`
        or KeyboardInterrupt that a backbone let through (a crash, never a success).
        """
        self.progress.close()
        crash = sys.exc_info()[1]
        if crash is not None and not (isinstance(crash, Exception) or is_task_exit(crash)):
            crash = None  # the dispatcher's own unwinding after a signal
        if crash is not None and self.aborted is None:
            self.abort(f"the backbone crashed: {error_line(crash)}")
        if self._failures is not None:
            self._failures.close()
            self._failures = None
        wall = time.monotonic() - self.started
        counts = dict(self.record.get("counts", {}))
        counts.update(
            ran=self.ran,
            succeeded=self.succeeded,
            failed=self.failed,
            not_run=self.total - self.ran,
        )
        if signum is not None:
            code, outcome = signal_exit_code(signum), f"interrupted by {signal_name(signum)}"
        elif self.aborted is not None:
            code, outcome = 1, f"aborted: {self.aborted}"
        elif self.failed:
            code, outcome = 1, "some items failed"
        else:
            code, outcome = 0, "success"
        self.record.update(
            counts=counts,
            end=_now(),
            wall_seconds=round(wall, 3),
            items_per_second=round(self.ran / wall, 3) if wall > 0 else None,
            outcome=outcome,
            exit_code=code,
        )
        self._write_record()
        rate = self.ran / wall if wall > 0 else 0.0
        not_run = f", not run {counts['not_run']}" if counts["not_run"] else ""
        print(
            f"dispatch: found {counts.get('found', '?')}, in shard {counts.get('in_shard', '?')}, "
            f"skipped {counts.get('skipped', '?')}, ran {self.ran} ({self.succeeded} ok, "
            f"{self.failed} failed){not_run}, {wall:.2f}s, {rate:.1f} items/s — {outcome}",
            file=self.stream,
        )
        for line in self._first_failures:
            print(f"dispatch: failed {line}", file=self.stream)
        if self.failed > len(self._first_failures):
            print(
                f"dispatch: ... and {self.failed - len(self._first_failures)} more",
                file=self.stream,
            )
        if self.failed or self.aborted:
            print(f"dispatch: failures listed in {self.failures_path}", file=self.stream)
        if signum is not None:
            print(
                "dispatch: run the same command again to finish the remaining items",
                file=self.stream,
            )
        print(f"dispatch: run record {self.record_path}", file=self.stream, flush=True)
        return code
