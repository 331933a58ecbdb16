"""`mp`: a pool of worker processes for CPU tasks, supervised item by item.

Not `multiprocessing.Pool` (it waits forever for a dead worker's result) nor
`ProcessPoolExecutor` (one dead worker breaks the whole pool): the supervisor here knows
which item each worker holds, so a worker killed by SIGKILL, a segfault or the OOM
killer costs exactly that item (failed, or retried with --retries) and a replacement
starts. Items go out in chunks sized from measured item times (about 50 ms of work), and
a worker's next chunk waits in its pipe while it runs the current one, so tiny items are
not dominated by pipe round trips. A per-item --timeout replaces a stuck worker.

On SIGINT/SIGTERM no new item starts; in-flight items get the grace period, then their
workers are stopped (SIGTERM, which abandons the item and removes its staged outputs;
SIGKILL if that does not end it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import itertools
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any

from backbones import mp_worker as W
from backbones.base import (
    Backbone,
    non_negative_int,
    positive_float,
    positive_int,
)
from dispatcher.environment import available_cpus
from dispatcher.execution import Outcome, error_line
from dispatcher.report import Reporter
from dispatcher.signals import StopSignal, blocked_stop_signals, signal_name
from dispatcher.stage import Stage
from dispatcher.task import Item, Task

START_METHODS = ("fork", "forkserver", "spawn")
TARGET_CHUNK_SECONDS = 0.05
"""Automatic chunks aim at this much work, so one pipe round trip is noise beside it."""
MAX_AUTO_CHUNK = 512
PIPELINE_DEPTH = 2
"""Chunks a worker holds at once: the one it runs and the next, waiting in its pipe."""
PREFETCH_MAX_BYTES = 64 * 1024
"""A waiting chunk must fit the pipe's buffer, so sending it never blocks the supervisor."""
TERM_WAIT_SECONDS = 2.0
"""After SIGTERM, how long a worker has to unwind before SIGKILL."""
POLL_SECONDS = 0.2
"""Longest the supervisor sleeps: bounds how late a signal or a timeout is noticed."""
BARREN_DEATHS_LIMIT = 3
"""Workers in a row that die without running an item (at least one per process) end the run."""


_SIGNAL_HINTS = {
    signal.SIGKILL: "killed: out of memory, or killed from outside",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
}


TMP_PREFIX = "dispatch-mp-"
"""The pool's temporary folder (crash logs) is `<tmp>/dispatch-mp-<owner pid>-XXXX`."""


def remove_dead_tmpdirs(tmp: str | None = None) -> None:
    """Remove the temporary folders of pools whose owner process is gone (a SIGKILLed run
    cannot remove its own); the pid in the name says whose it is, on this host."""
    tmp = tmp or tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def describe_exit(exitcode: int | None) -> str:
    """A worker's death in words, for the failure record of the item it held."""
    if exitcode is None:
        return "worker process vanished"
    if exitcode < 0:
        sig = -exitcode
        hint = _SIGNAL_HINTS.get(sig)  # type: ignore[call-overload]
        return f"worker process died of {signal_name(sig)}" + (f" ({hint})" if hint else "")
    return f"worker process exited with code {exitcode}"


class ProcessPoolBackbone(Backbone):
    name = "mp"
    summary = (
        "A pool of worker processes for CPU tasks: setup() once per worker, items in "
        "chunks; a dead or stuck worker costs only its item and is replaced."
    )

    @classmethod
    def incompatibility(cls, stage_cls: type[Stage], task_cls: type[Task]) -> str | None:
        if stage_cls.uses_device:
            return (
                f"it is a {stage_cls.style}, which computes on a device: run it with "
                "--backbone torch (or serial, to debug it in-process)"
            )
        return None

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(
            "--num-process",
            type=positive_int,
            default=None,
            metavar="N",
            help=f"worker processes (default: the CPUs this process may use, here {available_cpus()})",
        )
        parser.add_argument(
            "--chunksize",
            type=positive_int,
            default=None,
            metavar="N",
            help="items sent to a worker at a time (default: automatic, about "
            f"{TARGET_CHUNK_SECONDS * 1000:.0f} ms of work per chunk, from measured item times)",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=positive_int,
            default=None,
            metavar="N",
            help="replace a worker (teardown, new process, setup) after it ran N items "
            "(default: never)",
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=None,
            metavar="SECONDS",
            help="fail an item that runs longer than this and replace its worker (default: none)",
        )
        parser.add_argument(
            "--retries",
            type=non_negative_int,
            default=0,
            metavar="N",
            help="run a failed item (raised, crashed its worker, timed out) up to N more times "
            "(default: 0)",
        )
        parser.add_argument(
            "--start-method",
            choices=START_METHODS,
            default=None,
            help=f"how workers start (default: the platform's, here {_platform_start_method()})",
        )

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__(options)
        # Resolved here so the run record shows what was actually used.
        if options.num_process is None:
            options.num_process = available_cpus()
        if options.start_method is None:
            options.start_method = _platform_start_method()

    def run(self, stage: Stage, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        if not items:
            return
        supervisor = _Supervisor(stage, items, reporter, stop, self.options)
        supervisor.run()


def _platform_start_method() -> str:
    return (
        multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_context().get_start_method()
    )


class _Queue:
    """Items still to send, by index: returned ones first, then in order, then retries.

    A cursor over the plan's list rather than a queue of every index, so millions of
    items cost nothing here.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.cursor = 0
        self.returned: collections.deque[int] = collections.deque()
        self.retries: collections.deque[int] = collections.deque()

    def __len__(self) -> int:
        return len(self.returned) + (self.count - self.cursor) + len(self.retries)

    def take(self, size: int, alone: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Up to `size` items; one in `alone` goes out by itself."""
        taken: list[int] = []
        while self.returned and len(taken) < size:
            if self.returned[0] in alone:
                if not taken:
                    taken.append(self.returned.popleft())
                return taken
            taken.append(self.returned.popleft())
        if len(taken) < size and self.cursor < self.count:
            end = min(self.count, self.cursor + size - len(taken))
            taken.extend(range(self.cursor, end))
            self.cursor = end
        while self.retries and len(taken) < size:
            taken.append(self.retries.popleft())
        return taken

    def put_front(self, seqs: list[int]) -> None:
        """Items taken and not sent after all: first out next time, in their order."""
        self.returned.extendleft(reversed(seqs))

    def give_back(self, seq: int) -> None:
        """An item that never started (its worker died or was retired first)."""
        self.returned.append(seq)

    def retry(self, seq: int) -> None:
        self.retries.append(seq)


@dataclass
class _Worker:
    """The parent's view of one worker process."""

    process: Any
    conn: connection.Connection
    state: Any
    crash_log: str
    ready: bool = False
    chunks: collections.deque[list[int]] = field(default_factory=collections.deque)
    """Items sent and not yet answered by a "done", chunk by chunk (the first one runs)."""
    resolved: set[int] = field(default_factory=set)
    """Items of `chunks` already settled by a "fail" message."""
    assigned: int = 0
    acked: int = 0
    retiring: bool = False
    kill_reason: tuple[int, str | None] | None = None
    """(item, why) when the parent is stopping this worker; why None: abandoned, not failed."""
    kill_at: float | None = None
    dead: bool = False
    """Its process has ended; it is being released (only `_on_death` sets this)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.kill(self.pid, signum)


class _Supervisor:
    """Feeds chunks to workers, settles every item exactly once, replaces dead workers."""

    def __init__(
        self,
        stage: Stage,
        items: list[Item],
        reporter: Reporter,
        stop: StopSignal,
        options: argparse.Namespace,
    ) -> None:
        self.stage = stage
        self.items = items
        self.reporter = reporter
        self.stop = stop
        self.num_process = max(1, min(int(options.num_process), len(items)))
        self.fixed_chunk: int | None = options.chunksize
        self.max_tasks: int | None = options.max_tasks_per_child
        self.timeout: float | None = options.timeout
        self.retries: int = options.retries
        self.ctx = multiprocessing.get_context(options.start_method)
        self.pending = _Queue(len(items))
        self.attempts: dict[int, int] = {}
        self.workers: list[_Worker] = []
        """Live workers only: a worker whose process ended is released at once."""
        self.worker_numbers = itertools.count()
        self.halting: str | None = None
        self.mean_item: float | None = None
        self.barren_deaths = 0
        self.froze_gc = False
        self.suspects: set[int] = set()
        """Items of a chunk that could not be unpacked in a worker: sent one at a time."""
        remove_dead_tmpdirs()
        self.tmpdir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.reporter.note(
            f"mp: {len(self.items)} items on {self.num_process} worker processes "
            f"({self.ctx.get_start_method()}, chunksize {self.fixed_chunk or 'auto'})"
        )
        try:
            self._loop()
        finally:
            self._shutdown()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            if self.froze_gc:
                gc.unfreeze()

    def _loop(self) -> None:
        while True:
            if self.stop.is_set() and self.halting is None:
                self._halt("signal")
            busy = [w for w in self.workers if w.chunks]
            if self.halting is None:
                if not self.pending and not busy:
                    return
                self._feed()
            else:
                if not busy:
                    return
                # Whatever halted the run first (an abort, say), a signal's grace period holds.
                self._kill_past_deadline(busy)
            self._check_timers()
            self.reporter.tick()
            self._wait()

    def _halt(self, why: str) -> None:
        """No new items: workers finish the item in hand and hand back the rest of their chunk."""
        self.halting = why
        for w in self.workers:
            w.state[W.HALT] = 1

    def _kill_past_deadline(self, workers: list[_Worker]) -> None:
        """Once a signal's grace period is over, stop these workers (their items are abandoned)."""
        deadline = self.stop.deadline()
        if deadline is not None and time.monotonic() >= deadline:
            for w in workers:
                if w.kill_reason is None:
                    self._kill(w, None)

    # --- workers ------------------------------------------------------------------------

    def _start_worker(self) -> _Worker | None:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        state = self.ctx.RawArray("d", W.STATE_SLOTS)
        state[W.RUNNING] = W.IDLE
        number = next(self.worker_numbers)
        crash_log = os.path.join(self.tmpdir, f"worker-{number}.crash")
        inherited: list[int] = []
        if self.ctx.get_start_method() == "fork":
            inherited = [w.conn.fileno() for w in self.workers]
            inherited.append(parent_conn.fileno())
        process = self.ctx.Process(
            target=W.worker_main,
            args=(self.stage, child_conn, state, os.getpid(), inherited, crash_log),
            name=f"dispatch-mp-{number}",
            daemon=False,  # tasks may start processes of their own
        )
        try:
            self._prepare_start()
            with blocked_stop_signals():
                process.start()
        except Exception as exc:
            parent_conn.close()
            child_conn.close()
            self._abort(
                f"could not start a worker process ({self.ctx.get_start_method()}): "
                f"{error_line(exc)}"
            )
            return None
        child_conn.close()
        worker = _Worker(process, parent_conn, state, crash_log)
        self.workers.append(worker)
        return worker

    def _prepare_start(self) -> None:
        if self.ctx.get_start_method() == "fork":
            # Objects that exist now (the plan's items, imported modules) are left out of
            # garbage collection: a forked worker then never walks them, and never copies
            # the memory pages it would touch doing so.
            gc.freeze()
            self.froze_gc = True
        else:
            # The resource tracker unblocks signals when it starts; start it before
            # blocking, so the forkserver inherits the block and survives a SIGTERM sent
            # to the whole process group.
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()

    def _active(self) -> list[_Worker]:
        return [w for w in self.workers if not w.retiring and w.kill_reason is None]

    def _feed(self) -> None:
        active = self._active()
        busy = sum(1 for w in active if w.chunks)
        wanted = min(self.num_process, len(self.pending) + busy)
        while len(active) < wanted and self.halting is None:
            worker = self._start_worker()
            if worker is None:
                return
            active.append(worker)
        for w in active:
            if not w.ready:
                continue  # a worker gets work once its setup() is done: sends never block long
            if self._used_up(w):
                if not w.chunks:
                    self._retire(w)
                continue
            # A second chunk waits in the pipe while the first runs, so a worker never idles
            # for a round trip; it is sent only if small enough to never block the send.
            while self.pending and len(w.chunks) < PIPELINE_DEPTH and not self._used_up(w):
                if not self._send_chunk(w, prefetch=bool(w.chunks)):
                    break

    def _used_up(self, w: _Worker) -> bool:
        """The worker has been sent its --max-tasks-per-child items: it gets no more."""
        return self.max_tasks is not None and w.assigned >= self.max_tasks

    def _chunk_size(self, w: _Worker) -> int:
        if self.fixed_chunk is not None:
            size = self.fixed_chunk
        else:
            if self.mean_item is None:
                size = 1
            else:
                size = int(TARGET_CHUNK_SECONDS / max(self.mean_item, 1e-7))
                size = max(1, min(size, MAX_AUTO_CHUNK))
            # Near the end, smaller chunks keep every worker busy until the last item.
            size = min(size, max(1, math.ceil(len(self.pending) / (2 * self.num_process))))
        if self.max_tasks is not None:
            size = min(size, self.max_tasks - w.assigned)
        return max(1, size)

    def _send_chunk(self, w: _Worker, prefetch: bool) -> bool:
        """Send the worker its next chunk; False if a prefetch was too big to send now."""
        size = self._chunk_size(w)
        seqs = self.pending.take(size, self.suspects)
        chunk = [(seq, self.items[seq]) for seq in seqs]
        try:
            data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            chunk, data = self._drop_unpicklable(chunk)
            seqs = [seq for seq, _ in chunk]
            if not chunk:
                return True
        if prefetch and len(data) > PREFETCH_MAX_BYTES:
            self.pending.put_front(seqs)
            return False
        w.chunks.append(seqs)
        w.assigned += len(seqs)
        # If the worker died, its sentinel says so and the chunk's items go back.
        with contextlib.suppress(OSError):
            w.conn.send_bytes(data)
        return True

    def _drop_unpicklable(
        self, chunk: list[tuple[int, Item]]
    ) -> tuple[list[tuple[int, Item]], bytes]:
        good = []
        for seq, item in chunk:
            try:
                pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                self._settle(
                    seq,
                    Outcome(item[0], False, f"item cannot be sent to a worker: {error_line(exc)}"),
                    retry=False,
                )
            else:
                good.append((seq, item))
        return good, pickle.dumps(good, protocol=pickle.HIGHEST_PROTOCOL)

    def _retire(self, w: _Worker) -> None:
        """Ask a worker to tear down and exit (max-tasks-per-child); a new one replaces it."""
        w.retiring = True
        with contextlib.suppress(OSError):
            w.conn.send_bytes(pickle.dumps(None))

    def _kill(self, w: _Worker, reason: str | None) -> None:
        """Stop a worker now: SIGTERM abandons its item (staging removed), SIGKILL follows."""
        running = int(w.state[W.RUNNING])
        w.kill_reason = (running, reason)
        w.state[W.ABORT] = 1
        w.signal(signal.SIGTERM)
        w.kill_at = time.monotonic() + TERM_WAIT_SECONDS

    def _check_timers(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.kill_at is not None and now >= w.kill_at:
                w.signal(signal.SIGKILL)
                w.kill_at = None
            if self.timeout is None or w.kill_reason is not None or not w.chunks:
                continue
            running = w.state[W.RUNNING]
            started = w.state[W.STARTED]
            if running >= 0 and now - started > self.timeout:
                self._kill(
                    w,
                    f"TimeoutError: item ran longer than --timeout {self.timeout:g}s; "
                    "its worker was stopped and replaced",
                )

    # --- events ---------------------------------------------------------------------------

    def _wait(self) -> None:
        live = list(self.workers)
        if not live:
            return
        by_conn = {id(w.conn): w for w in live}
        by_sentinel = {w.process.sentinel: w for w in live}
        objects: list[Any] = [w.conn for w in live] + list(by_sentinel)
        timeout = POLL_SECONDS
        if self.timeout is not None:
            timeout = min(timeout, max(self.timeout / 4, 0.01))
        for ready in connection.wait(objects, timeout):
            if isinstance(ready, int):
                worker = by_sentinel[ready]
                self._drain(worker)
                self._on_death(worker)
            else:
                worker = by_conn[id(ready)]
                if not worker.dead:  # its sentinel may have come first in this same batch
                    self._drain(worker)

    def _drain(self, w: _Worker) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                message = w.conn.recv()
            except Exception:  # EOF, a closed pipe, a garbled message: the sentinel tells the rest
                return
            self._on_message(w, message)

    def _on_message(self, w: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            w.ready = True
        elif kind == "fail":
            self.barren_deaths = 0
            _, seq, error, tb = message
            if w.chunks and seq in w.chunks[0] and seq not in w.resolved:
                w.resolved.add(seq)
                self._settle(seq, Outcome(self.items[seq][0], False, error, tb))
        elif kind == "elsewhere":
            _, seq = message
            if w.chunks and seq in w.chunks[0] and seq not in w.resolved:
                w.resolved.add(seq)
                self._settle(seq, Outcome(self.items[seq][0], True, elsewhere=True))
        elif kind == "done":
            _, ran, busy = message
            self._close_chunk(w, ran)
            if ran:
                self.barren_deaths = 0
                per_item = busy / ran
                self.mean_item = (
                    per_item if self.mean_item is None else (0.7 * self.mean_item + 0.3 * per_item)
                )
        elif kind == "chunk_error" and w.chunks:
            _, error, tb = message
            w.resolved = set()
            self._isolate(w.chunks.popleft(), error, tb)
        elif kind == "setup_failed":
            _, error, tb = message
            self._abort(f"task setup failed in a worker: {error}", tb)

    def _close_chunk(self, w: _Worker, finished: int) -> None:
        """The first `finished` items of the worker's chunk ran; the rest never started."""
        if not w.chunks:
            return
        chunk, resolved = w.chunks.popleft(), w.resolved
        w.acked += finished
        w.resolved = set()
        if self.suspects:
            self.suspects.difference_update(chunk[:finished])
        # Items that succeeded need no retry decision: counted together, one progress update
        # per chunk rather than per item.
        items = self.items
        ran = chunk[:finished]
        if resolved:
            ran = [seq for seq in ran if seq not in resolved]
        self.reporter.record_successes([items[seq][0] for seq in ran])
        for seq in chunk[finished:]:
            if seq not in resolved:
                self._unstarted(seq)

    def _isolate(self, chunk: list[int], error: str, tb: str | None) -> None:
        """A chunk that could not be unpacked in a worker (none of it ran): find the culprit.

        A chunk of several items goes out again one item at a time, so items that did
        nothing wrong still run; a chunk of one item has found it: that item fails.
        """
        if len(chunk) == 1:
            self.suspects.discard(chunk[0])
            self._settle(chunk[0], Outcome(self.items[chunk[0]][0], False, error, tb))
            return
        self.suspects.update(chunk)
        for seq in chunk:
            self._unstarted(seq)

    def _on_death(self, w: _Worker) -> None:
        w.dead = True
        w.process.join(0.5)
        exitcode = w.process.exitcode
        try:
            lost = self._settle_dead_worker(w, exitcode)
            if w.kill_reason is not None or self.halting:
                return
            if w.retiring:
                if exitcode:
                    self.reporter.note(
                        f"a worker ended badly after teardown: {describe_exit(exitcode)}"
                    )
                return
            if not lost:
                self._on_barren_death(w, exitcode)
        finally:
            self._release(w)

    def _settle_dead_worker(self, w: _Worker, exitcode: int | None) -> bool:
        """Settle the items a dead worker held; True if one of them was settled failed."""
        lost = False
        if w.chunks:
            finished = int(w.state[W.COMPLETED]) - w.acked
            running = int(w.state[W.RUNNING])
            chunk = w.chunks[0]
            receiving = finished == 0 and running < 0
            if receiving and w.kill_reason is None and not w.retiring and self.halting is None:
                # Died between receiving a chunk and starting it (unpickling an item crashed?).
                w.chunks.popleft()
                w.resolved = set()
                lost = len(chunk) == 1
                error = f"WorkerDied: {describe_exit(exitcode)} while receiving this item"
                self._isolate(chunk, error, self._crash_text(w))
            else:
                held = finished < len(chunk) and chunk[finished] == running
                if held and running not in w.resolved:
                    w.resolved.add(running)
                    lost = True
                    self._on_lost_item(w, running, exitcode)
                self._close_chunk(w, finished)
        for rest in w.chunks:
            for seq in rest:
                self._unstarted(seq)
        w.chunks.clear()
        return lost

    def _release(self, w: _Worker) -> None:
        """Forget a dead worker: its pipe, its process handle (sentinel) and its crash log."""
        with contextlib.suppress(OSError):
            w.conn.close()
        with contextlib.suppress(ValueError):  # still running: left to the garbage collector
            w.process.close()
        with contextlib.suppress(OSError):
            os.remove(w.crash_log)
        self.workers.remove(w)

    def _on_barren_death(self, w: _Worker, exitcode: int | None) -> None:
        """A worker died holding no item (in setup, or unpacking its work): never loop on it."""
        self.barren_deaths += 1
        when = "before finishing setup()" if not w.ready else "without running an item"
        self.reporter.note(f"a worker died {when}: {describe_exit(exitcode)}")
        if self.barren_deaths >= max(BARREN_DEATHS_LIMIT, self.num_process):
            self._abort(
                f"{self.barren_deaths} worker processes in a row died {when} "
                f"({describe_exit(exitcode)})",
                self._crash_text(w),
            )

    def _on_lost_item(self, w: _Worker, seq: int, exitcode: int | None) -> None:
        """The item a worker was running when it died."""
        key = self.items[seq][0]
        # A worker killed mid-item (SIGKILL after the grace period, the OOM killer) could
        # not remove its staging: do it now that it is reaped, unless a live run holds it.
        try:
            self.stage.clear_abandoned(key)
        except Exception as exc:
            self.reporter.note(f"could not remove what the killed attempt at {key} left: {exc}")
        if w.kill_reason is not None:
            killed_seq, reason = w.kill_reason
            if reason is None or killed_seq != seq:
                self._unstarted(seq)  # abandoned at a stop: not run, a rerun does it
                return
            self._settle(seq, Outcome(key, False, reason, self._crash_text(w)))
            return
        error = f"WorkerDied: {describe_exit(exitcode)} while running this item"
        self.reporter.note(f"{error.split(': ', 1)[1]} ({key}); starting a replacement")
        self._settle(seq, Outcome(key, False, error, self._crash_text(w)))

    def _crash_text(self, w: _Worker) -> str | None:
        try:
            with open(w.crash_log, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
        except OSError:
            return None
        return text or None

    # --- settling items -------------------------------------------------------------------

    def _settle(self, seq: int, outcome: Outcome, retry: bool = True) -> None:
        """Record an item's final outcome, or queue it again while retries remain."""
        if not outcome.ok:
            tried = self.attempts.get(seq, 0)
            if retry and tried < self.retries and self.halting is None:
                self.attempts[seq] = tried + 1
                self.reporter.note(
                    f"retrying {outcome.key} ({tried + 1}/{self.retries}): {outcome.error}"
                )
                self.pending.retry(seq)
                return
            if tried:
                outcome.error = f"{outcome.error} (failed {tried + 1} attempts)"
        self.reporter.record_outcome(outcome)

    def _unstarted(self, seq: int) -> None:
        if self.halting is None:
            self.pending.give_back(seq)

    def _abort(self, error: str, tb: str | None = None) -> None:
        self.reporter.abort(error, tb)
        if self.halting is None:
            self._halt("abort")

    # --- the end ------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Let idle workers tear down and exit; stop the rest; never wait forever."""
        for w in self.workers:
            if not w.retiring and w.kill_reason is None:
                if not w.chunks:
                    self._retire(w)
                else:
                    self._kill(w, None)
        while self.workers:
            self._kill_past_deadline(self.workers)
            self._check_timers()
            self._wait()
