"""Inside one `mp` worker process: setup once, items in chunks, teardown once.

The parent decides everything. Workers ignore SIGINT (Ctrl-C reaches the whole process
group) and ignore SIGTERM too unless the parent has asked them to abandon their work
first, so a SIGTERM sent to every process of a job at once (SLURM) still leaves the
in-flight items their grace period. When the parent does stop a worker, `Abandoned` is
raised inside the running item, which removes its staged outputs on the way out; the
same happens when the parent itself dies (Linux sends the worker SIGTERM then).

The worker tells the parent what it is doing through a small shared array (no message
per item): which item is running since when, and how many it has finished. That is how
the parent times items out and knows which item a dead worker was holding.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from dispatcher.engines import (
    ControlFlow,
    Outcome,
    Stage,
    StageFailed,
    error_line,
    keep_run_log,
    logger,
    run_batch,
    run_item,
    unblock_stop_signals,
)

# Slots of the shared state array (doubles), written by the worker, read by the parent,
# except ABORT and HALT, which the parent writes.
RUNNING, STARTED, COMPLETED, ABORT, HALT = range(5)
STATE_SLOTS = 5
IDLE = -1.0

PARENT_CHECK_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


class Abandoned(ControlFlow):
    """Raised inside a worker that the parent is stopping; unwinds staged outputs."""


def abandon_on_sigterm(asked: Callable[[], Any], crash_file: Any, parent: ParentWatch) -> Any:
    """A SIGTERM handler: abandon the work in hand (raise `Abandoned`) when the parent
    `asked` for it or is gone; otherwise the signal is the parent's to act on."""

    def handler(signum: int, frame: object) -> None:
        if asked() or not parent.alive():
            # Where the item was stuck: filed with a timed-out item's failure.
            with contextlib.suppress(Exception):
                faulthandler.dump_traceback(file=crash_file, all_threads=False)
            raise Abandoned()

    return handler


class ParentWatch:
    """Whether the dispatching process is still there (a worker never outlives it for long)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ppid = os.getppid()  # the dispatcher itself, or the forkserver

    def alive(self) -> bool:
        if os.getppid() != self.ppid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def signal_me_on_death(self) -> None:
        """Linux: SIGTERM this worker when its parent dies (the handler then abandons the item)."""
        if not sys.platform.startswith("linux"):
            return
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _receive(conn: Connection, parent: ParentWatch) -> Any:
    """The next message from the parent; None when told to stop or the parent is gone."""
    while not conn.poll(PARENT_CHECK_SECONDS):
        if not parent.alive():
            return None
    try:
        data = conn.recv_bytes()
    except (EOFError, OSError):
        return None
    return data


def _report(conn: Connection, seq: int, outcome: Outcome) -> None:
    """Only what is not a plain success travels: the parent counts the rest from `done`."""
    if not outcome.ok:
        conn.send(("fail", seq, outcome.error, outcome.traceback, outcome.malformed))
    elif outcome.elsewhere:
        conn.send(("elsewhere", seq))


def _run_chunk(stage: Stage, chunk: list[tuple[int, Any]], state: Any, conn: Connection) -> int:
    """Run a chunk's items in order until done or told to halt; returns how many ran.

    A batched stage gets the chunk as one batch (the running slot names its first item).
    """
    if stage.batched:
        if state[HALT] or state[ABORT] or not chunk:
            return 0
        state[STARTED] = time.monotonic()
        state[RUNNING] = chunk[0][0]
        try:
            outcomes = run_batch(stage, [item for _, item in chunk])
        finally:
            state[RUNNING] = IDLE  # a StageFailed ran no item: none is held
        for (seq, _), outcome in zip(chunk, outcomes, strict=True):
            _report(conn, seq, outcome)
        state[COMPLETED] += len(chunk)
        return len(chunk)
    ran = 0
    for seq, item in chunk:
        if state[HALT] or state[ABORT]:
            break
        state[STARTED] = time.monotonic()
        state[RUNNING] = seq
        _report(conn, seq, run_item(stage, item))
        state[COMPLETED] += 1
        state[RUNNING] = IDLE
        ran += 1
    return ran


def _serve(stage: Stage, conn: Connection, state: Any, parent: ParentWatch) -> None:
    keep_run_log(stage.run_dir)  # a spawned worker has no handler of its parent's
    try:
        stage.setup()
    except ControlFlow:
        raise
    except BaseException as exc:  # a task's sys.exit() too: reported, not a silent death
        conn.send(("setup_failed", error_line(exc), traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        data = _receive(conn, parent)
        if data is None:
            break
        try:
            message = pickle.loads(data)
        except Exception as exc:
            conn.send(
                (
                    "chunk_error",
                    f"item could not be unpickled in the worker: {error_line(exc)}",
                    traceback.format_exc(),
                )
            )
            continue
        if message is None:
            break
        alone, chunk = message
        stage.work_alone(alone)
        start = time.perf_counter()
        try:
            ran = _run_chunk(stage, chunk, state, conn)
        except StageFailed as exc:  # nothing can compute here (a model that cannot load)
            conn.send(("setup_failed", exc.error, exc.tb))
            break
        conn.send(("done", ran, time.perf_counter() - start))
    try:
        stage.teardown()
    except ControlFlow:
        raise
    except BaseException as exc:
        logger.info(f"worker {os.getpid()}: task teardown failed: {error_line(exc)}")


class _LockedConnection:
    """The worker's end of its pipe, one sender at a time: task threads print too."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self.lock:
            self.conn.send(message)

    def poll(self, timeout: float) -> bool:
        return self.conn.poll(timeout)

    def recv_bytes(self) -> bytes:
        return self.conn.recv_bytes()


class _LinesToParent(io.TextIOBase):
    """The worker's stdout and stderr: whole lines sent to the parent, which writes them
    beside its progress display (a worker writing to the terminal itself would glue its
    text onto the parent's bar)."""

    def __init__(self, conn: _LockedConnection) -> None:
        self.conn = conn
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("line", line))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, ""
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("line", line))


def worker_main(
    stage: Stage,
    conn: Connection,
    state: Any,
    parent_pid: int,
    inherited_fds: list[int],
    crash_log: str,
) -> None:
    """Entry point of a worker process (started with SIGINT/SIGTERM blocked)."""
    with supervised(parent_pid, inherited_fds, crash_log, lambda: state[ABORT]) as parent:
        if parent is not None:
            locked = _LockedConnection(conn)
            lines = _LinesToParent(locked)
            with contextlib.redirect_stdout(lines), contextlib.redirect_stderr(lines):
                try:
                    _serve(stage, locked, state, parent)  # type: ignore[arg-type]
                finally:
                    lines.flush()


@contextlib.contextmanager
def supervised(
    parent_pid: int, inherited_fds: list[int], crash_log: str, abandon: Callable[[], Any]
) -> Iterator[ParentWatch | None]:
    """The body of a child the parent supervises (an `mp` worker, a device process):
    signals left to the parent, SIGTERM abandoning the work once `abandon()` says so (or
    the parent is gone), a segfault's traceback in `crash_log`. Yields None when the
    parent is already gone; the parent stopping it or going away ends the body quietly.
    """
    # Under fork, the parent's ends of other children's pipes were inherited: close them,
    # so that each pipe reports EOF when the parent goes away.
    for fd in inherited_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    parent = ParentWatch(parent_pid)
    with open(crash_log, "w", encoding="utf-8") as crash_file:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, abandon_on_sigterm(abandon, crash_file, parent))
        parent.signal_me_on_death()
        unblock_stop_signals()
        if not parent.alive():
            yield None
            return
        # A segfault's Python traceback goes here; the parent files it with the item.
        faulthandler.enable(file=crash_file, all_threads=False)
        try:
            yield parent
        except (Abandoned, BrokenPipeError, EOFError):
            pass
        finally:
            faulthandler.disable()
