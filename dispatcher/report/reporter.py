"""Progress, the end-of-run summary, failures.jsonl and the run record.

All of it goes to the terminal and the log directory, never into an output root.
Backbones call `record_outcome` once per item (in the parent process; `record_successes`
for a chunk's items that succeeded), `tick` while they wait, `note` for a line of their
own, and `abort` when the run cannot go on at all.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from dispatcher.errors import run_exit
from dispatcher.execution.steps import Outcome, error_line, is_task_exit
from dispatcher.report import run_record, statistics
from dispatcher.report.counts import Counts
from dispatcher.report.fail_fast import FailFast
from dispatcher.report.failure_groups import FailureGroups
from dispatcher.report.log import hide, logger, show
from dispatcher.report.run_record import (
    RecordFile,
    add_sample,
    now_text,
    strict_json,
)
from dispatcher.report.summary import SHOWN_MALFORMED, Named, summary_lines

DEFAULT_LOG_INTERVAL = 60.0
"""Seconds between progress lines when stderr is not a terminal (SLURM log files)."""


_VERSIONED = {
    "torch": "torch",
    "torch-npu": "torch_npu",
    "pandas": "pandas",
    "av": "av",
    "omegaconf": "omegaconf",
}
"""Distributions (by module) whose version a run records when the run imported them."""


def _versions() -> dict[str, str]:
    """The versions a run's outcome may depend on, read off the modules already imported
    (`importlib.metadata` would cost more than the rest of a rerun's record)."""
    from dispatcher import __version__

    versions = {"python": platform.python_version(), "platform": _platform()}
    versions["shard-dispatch"] = __version__
    for dist, module in _VERSIONED.items():
        if module in sys.modules:
            versions[dist] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return versions


def _platform() -> str:
    """`Linux-6.8.0-x86_64-with-glibc2.36`, as `platform.platform()` says it, without what
    makes that slow (a `uname -p` child process, reading the interpreter's binary)."""
    try:
        u = os.uname()
    except AttributeError:  # Windows
        return platform.platform()
    text = f"{u.sysname}-{u.release}-{u.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    return f"{text}-with-{libc.replace(' ', '')}" if libc else text


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


class Progress:
    """A tqdm bar on a terminal; plain periodic lines otherwise (SLURM log files).

    While open it is the display the `dispatcher` logger writes through (`show`).
    """

    def __init__(self, total: int, stream: TextIO, interval: float) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self._last_line = self.start
        self._done = 0
        self._failed = 0
        self._bar: Any = None
        if total and _isatty(stream) and _has_columns(stream):
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
        show(self)

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
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")  # a log file is read long after
        return (
            f"dispatch: {stamp} {done}/{self.total} items ({share:.1f}%), {failed} failed, "
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
        hide(self)
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _has_columns(stream: TextIO) -> bool:
    """Whether a terminal has room for a bar: a pseudo-terminal of 0 columns (some batch
    systems and CI runners open one) gets lines instead."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return True  # a terminal that cannot say its size: the bar, as before


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
        counts: Counts,
        record: dict[str, Any],
        stream: TextIO | None = None,
        interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.run_dir = run_dir
        self.stream = stream or sys.stderr
        self.counts = counts
        """The plan's numbers, to which this reporter counts every outcome."""
        self.failures_path = os.path.join(run_dir, "failures.jsonl")
        self.record_path = os.path.join(run_dir, "run.json")
        self.record = dict(record)
        self.aborted: str | None = None
        self.outcomes: list[Outcome] | None = None
        """Set to a list to keep every outcome, in the order they finished (for Python
        callers; a command-line run of millions of items keeps only counts)."""
        self._failures: int | None = None
        self._items: list[tuple[str, Any]] = []
        self._payloads: dict[str, Any] | None = None
        self._describe: Callable[[str, Any], Any] | None = None
        self.log_fault: str | None = None
        self.failures_not_written = 0
        self.fail_fast: FailFast | None = None
        """When the run stops for its failures (set by the runner)."""
        self.stop: Any = None
        """The run's stop signal, halted when `fail_fast` says so."""
        self.failures = FailureGroups()
        """Failed items by kind of failure, malformed inputs aside."""
        self.malformed_inputs = Named(SHOWN_MALFORMED)
        """Items whose input is malformed (`errors.MalformedInput`): the run exits 2."""
        self.started = time.monotonic()
        self.record["start"] = now_text()
        self.record["host"] = os.uname().nodename
        self.record["pid"] = os.getpid()
        self.record["versions"] = _versions()
        self.record["outcome"] = "running"
        self.record["heartbeat"] = self.record["start"]
        self._record_file = RecordFile(self.record_path)
        self._last_beat = self.started
        os.makedirs(run_dir, exist_ok=True)
        self._write_record()
        self.progress = Progress(counts.to_run, self.stream, interval)

    def remember_payloads(
        self, items: list[tuple[str, Any]], describe: Callable[[str, Any], Any]
    ) -> None:
        """Where failure records find an item's payload (looked up on the first failure),
        and how a payload becomes the record's `item` (the item source's `describe`)."""
        self._items = items
        self._describe = describe

    def record_outcome(self, outcome: Outcome) -> None:
        """Count one finished item (call once per item, in the parent process)."""
        if self.outcomes is not None:
            self.outcomes.append(outcome)
        if outcome.elsewhere:
            self.counts.add_made_elsewhere()
        elif outcome.ok:
            self.counts.add_succeeded()
        else:
            malformed = outcome.malformed
            self.counts.add_failed(malformed is not None)
            self._write_failure(outcome.key, outcome.error, outcome.traceback)
            if malformed is not None:
                self.malformed_inputs.add(malformed)
            else:
                self.failures.add(outcome.key, outcome.error or "failed")
            self._check_fail_fast()
        self.progress.update(self.counts.settled, self.counts.failed)
        self._beat()

    def _check_fail_fast(self) -> None:
        """Stop the run (no new items; in-flight ones finish) once its failures say so."""
        if self.fail_fast is None or self.aborted is not None:
            return
        reason = self.fail_fast.reason(self.counts)
        if reason is not None:
            self.abort(f"stopped: {reason}")
            if self.stop is not None:
                self.stop.halt()

    def record_successes(self, keys: Sequence[str]) -> None:
        """Count several items that succeeded, made by this run: `record_outcome` for each
        of them at once (a chunk's worth), with one progress update."""
        if not keys:
            return
        if self.outcomes is not None:
            self.outcomes.extend(Outcome(key, True) for key in keys)
        self.counts.add_succeeded(len(keys))
        self.progress.update(self.counts.settled, self.counts.failed)
        self._beat()

    def tick(self) -> None:
        """Let a waiting backbone keep the periodic progress lines and heartbeats going."""
        self.progress.tick()
        self._beat()

    def write_line(self, text: str) -> None:
        """A line a worker printed, as it printed it, beside the progress display."""
        logger.info(text, extra={"bare": True})

    def note(self, text: str) -> None:
        """A line for the user (a worker replaced, an item retried), beside the progress."""
        logger.info(text)

    def abort(self, error: str, traceback: str | None = None) -> None:
        """The run cannot go on (e.g. the task's setup failed): recorded once, exit code 1.

        Items not run stay pending; a rerun after the fix picks them up.
        """
        if self.aborted is None:
            self.aborted = error
            self._write_failure(None, error, traceback)
            logger.error(error)

    def _item(self, key: str | None) -> Any:
        if key is None:
            return None
        if self._payloads is None:
            self._payloads = dict(self._items)
        if key not in self._payloads or self._describe is None:
            return None
        try:
            return self._describe(key, self._payloads[key])
        except Exception as exc:  # a record without its item beats a lost record
            return {"unavailable": error_line(exc)}

    def _write_failure(self, key: str | None, error: str | None, traceback: str | None) -> None:
        row = {
            "key": key,
            "item": self._item(key),
            "error": error,
            "traceback": traceback,
            "time": now_text(),
        }
        line = (json.dumps(strict_json(row), default=str) + "\n").encode("utf-8")
        try:
            if self._failures is None:
                self._failures = os.open(
                    self.failures_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            append_line(self._failures, line)
        except OSError as exc:
            self.failures_not_written += 1
            self._log_fault(self.failures_path, exc)

    def _log_fault(self, path: str, exc: OSError) -> None:
        """A log write failed: said once; items go on, their outputs are unaffected."""
        if self.log_fault is None:
            self.log_fault = f"{type(exc).__name__}: {exc.strerror or exc}"
            logger.warning(
                f"cannot write {path} ({self.log_fault}); the run goes on, outputs are unaffected"
            )

    def _write_record(self) -> None:
        self._record_file.write(self.record)

    def _beat(self) -> None:
        """Every HEARTBEAT_SECONDS while the run goes: the record's heartbeat and a sample."""
        now = time.monotonic()
        if now - self._last_beat < run_record.HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        add_sample(self.record, now - self.started, self.counts.settled, self.counts.failed)
        with contextlib.suppress(OSError):  # said at the end, if the end cannot write either
            self._write_record()

    def _try_write_record(self) -> str | None:
        """Write the run record; the reason when it cannot be (a full log directory)."""
        try:
            self._write_record()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        return None

    def finish(self, signum: int | None) -> int:
        """Print the summary, complete the run record; returns the exit code.

        Called from a `finally:` block, so an exception escaping the backbone is seen
        here and recorded as the outcome before it propagates; so is a task's `sys.exit()`
        or KeyboardInterrupt that a backbone let through (a crash, never a success).
        """
        crash = sys.exc_info()[1]
        if crash is not None and not (isinstance(crash, Exception) or is_task_exit(crash)):
            crash = None  # the dispatcher's own unwinding after a signal
        if crash is not None and self.aborted is None:
            self.abort(f"the backbone crashed: {error_line(crash)}")
        self.progress.close()
        if self._failures is not None:
            os.close(self._failures)
            self._failures = None
        wall = time.monotonic() - self.started
        self.counts.settle()
        code, outcome = run_exit(self.counts, self.aborted, signum)
        self._complete_record(wall, outcome, code)
        record_error = self._try_write_record()
        self._print_summary(wall, outcome, signum is not None, record_error)
        return code

    def _complete_record(self, wall: float, outcome: str, code: int) -> None:
        """The run record as the run ended: its counts, times, outcome and exit code."""
        # The last progress sample: a run shorter than a heartbeat gets one too.
        add_sample(self.record, wall, self.counts.settled, self.counts.failed)
        self.record.update(
            counts=self.counts.to_record(),
            end=now_text(),
            wall_seconds=round(wall, 3),
            items_per_second=round(self.counts.ran / wall, 3) if wall > 0 else None,
            outcome=outcome,
            exit_code=code,
        )
        if self.log_fault is not None:
            self.record["log_faults"] = {
                "error": self.log_fault,
                "failures_not_written": self.failures_not_written,
            }
        self._record_statistics()

    def _print_summary(
        self, wall: float, outcome: str, interrupted: bool, record_error: str | None
    ) -> None:
        for line in summary_lines(self, outcome, wall, interrupted):
            print(line, file=self.stream)
        if record_error is None:
            print(f"dispatch: run record {self.record_path}", file=self.stream, flush=True)
        else:
            print(
                f"dispatch: the run record could not be written ({record_error}): "
                f"{self.record_path}",
                file=self.stream,
                flush=True,
            )

    def _record_statistics(self) -> None:
        """Custom statistics the stage's items recorded in the run directory, merged into
        the run record (`statistics`); a log directory that cannot be read records none."""
        try:
            custom = statistics.collect(self.run_dir).summary()
        except OSError:
            return
        if custom:
            self.record["statistics"] = custom


def append_line(fd: int, line: bytes) -> None:
    """Append one whole line to `fd` (opened O_APPEND), or nothing at all.

    A short write (a full disk) is cut back off, so the file stays whole JSON lines.
    """
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        with contextlib.suppress(OSError):  # the fault itself is what gets reported
            os.ftruncate(fd, size)
        raise
