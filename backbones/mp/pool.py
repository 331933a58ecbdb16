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
import contextlib
import multiprocessing
import pickle
import signal
import time
from collections.abc import Iterator
from multiprocessing import connection
from typing import Any

from backbones.base import (
    Backbone,
    add_retries_option,
    positive_float,
    positive_int,
)
from backbones.mp import worker as W
from backbones.mp.items import TARGET_CHUNK_SECONDS, ItemBook, PoolWorker, describe_exit
from backbones.mp.spawn import Spawner
from dispatcher.engines import (
    Outcome,
    RunContext,
    Stage,
    Task,
    available_cpus,
    error_line,
)

START_METHODS = ("fork", "forkserver", "spawn")
PIPELINE_DEPTH = 2
"""Chunks a worker holds at once: the one it runs and the next, waiting in its pipe."""
TERM_WAIT_SECONDS = 2.0
"""After SIGTERM, how long a worker has to unwind before SIGKILL."""
POLL_SECONDS = 0.2
"""Longest the supervisor sleeps: bounds how late a signal or a timeout is noticed."""
BARREN_DEATHS_LIMIT = 3
"""Workers in a row that die without running an item (at least one per process) end the run."""


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
        add_retries_option(parser, "raised, crashed its worker, timed out")
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

    def run(self, context: RunContext) -> None:
        if not context.items:
            return
        supervisor = _Supervisor(context, self.options)
        supervisor.run()


def _platform_start_method() -> str:
    return (
        multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_context().get_start_method()
    )


class _Supervisor:
    """Feeds chunks to workers until every item is settled, halts on a signal or an abort,
    and shuts the pool down; `_Workers` watches the processes themselves."""

    def __init__(self, context: RunContext, options: argparse.Namespace) -> None:
        stage, items, reporter = context.stage, context.items, context.reporter
        self.items = items
        self.reporter = reporter
        self.stop = context.stop
        self.num_process = max(1, min(int(options.num_process), len(items)))
        self.fixed_chunk: int | None = options.chunksize
        self.max_tasks: int | None = options.max_tasks_per_child
        self.ctx = multiprocessing.get_context(options.start_method)
        self.book = ItemBook(
            stage,
            items,
            reporter,
            options.retries,
            self.num_process,
            self.fixed_chunk,
            self.max_tasks,
            context.lease,
        )
        self.lease = context.lease
        self.spawner = Spawner(self.ctx)
        self.pool = _Workers(stage, self.book, self.spawner, options.timeout, self.num_process)

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
            self.spawner.close()

    def _loop(self) -> None:
        pool, book = self.pool, self.book
        while True:
            if self.stop.is_set() and not book.halting:
                pool.halt()
            busy = [w for w in pool.workers if w.chunks]
            if not book.halting:
                if not book.pending and not busy:
                    return
                self._feed()
            else:
                if not busy:
                    return
                # Whatever halted the run first (an abort, say), a signal's grace period holds.
                pool.kill_past_deadline(busy, self.stop.deadline())
            pool.check_timers()
            self._let_newcomers_in()
            self.reporter.tick()
            pool.wait()

    def _let_newcomers_in(self) -> None:
        """Once another run came to the output root, drop the lease's flag as soon as no
        chunk sent alone is running (from then on every item is claimed)."""
        lease = self.lease
        if lease is not None and lease.switching and not any(w.alone for w in self.pool.workers):
            lease.drained()

    def _feed(self) -> None:
        pool = self.pool
        active = pool.active()
        busy = sum(1 for w in active if w.chunks)
        wanted = min(self.num_process, len(self.book.pending) + busy)
        while len(active) < wanted and not self.book.halting:
            worker = pool.start()
            if worker is None:
                return
            active.append(worker)
        for w in active:
            if not w.ready:
                continue  # a worker gets work once its setup() is done: sends never block long
            if self._used_up(w):
                if not w.chunks:
                    pool.retire(w)
                continue
            # A second chunk waits in the pipe while the first runs, so a worker never idles
            # for a round trip; it is sent only if small enough to never block the send.
            while self.book.pending and len(w.chunks) < PIPELINE_DEPTH and not self._used_up(w):
                if not self.book.send_chunk(w, prefetch=bool(w.chunks)):
                    break

    def _used_up(self, w: PoolWorker) -> bool:
        """The worker has been sent its --max-tasks-per-child items: it gets no more."""
        return self.max_tasks is not None and w.assigned >= self.max_tasks

    def _shutdown(self) -> None:
        """Let idle workers tear down and exit; stop the rest; never wait forever."""
        pool = self.pool
        for w in pool.workers:
            if not w.retiring and w.kill_reason is None:
                if not w.chunks:
                    pool.retire(w)
                else:
                    pool.kill(w, None)
        while pool.workers:
            pool.kill_past_deadline(pool.workers, self.stop.deadline())
            pool.check_timers()
            pool.wait()


class _Workers:
    """The live worker processes: started, retired or stopped on request, timed, and
    listened to; what they say and how they end is settled in the item book."""

    def __init__(
        self,
        stage: Stage,
        book: ItemBook,
        spawner: Spawner,
        timeout: float | None,
        num_process: int,
    ) -> None:
        self.stage = stage
        self.book = book
        self.items = book.items
        self.reporter = book.reporter
        self.spawner = spawner
        self.timeout = timeout
        self.num_process = num_process
        self.workers: list[PoolWorker] = []
        """Live workers only: a worker whose process ended is released at once."""
        self.barren_deaths = 0

    def start(self) -> PoolWorker | None:
        try:
            worker = self.spawner.start(self.stage, self.workers)
        except Exception as exc:
            self.abort(
                f"could not start a worker process ({self.spawner.method}): {error_line(exc)}"
            )
            return None
        self.workers.append(worker)
        return worker

    def halt(self) -> None:
        """No new items: workers finish the item in hand and hand back the rest of their chunk."""
        self.book.halting = True
        for w in self.workers:
            w.state[W.HALT] = 1

    def abort(self, error: str, tb: str | None = None) -> None:
        """The run cannot go on (a worker cannot start or set up, or keeps dying before it
        runs anything): recorded once, and the run halts."""
        self.reporter.abort(error, tb)
        if not self.book.halting:
            self.halt()

    def active(self) -> list[PoolWorker]:
        return [w for w in self.workers if not w.retiring and w.kill_reason is None]

    def retire(self, w: PoolWorker) -> None:
        """Ask a worker to tear down and exit (max-tasks-per-child); a new one replaces it."""
        w.retiring = True
        with contextlib.suppress(OSError):
            w.conn.send_bytes(pickle.dumps(None))

    def kill(self, w: PoolWorker, reason: str | None) -> None:
        """Stop a worker now: SIGTERM abandons its item (staging removed), SIGKILL follows."""
        running = int(w.state[W.RUNNING])
        w.kill_reason = (running, reason)
        w.state[W.ABORT] = 1
        w.signal(signal.SIGTERM)
        w.kill_at = time.monotonic() + TERM_WAIT_SECONDS

    def kill_past_deadline(self, workers: list[PoolWorker], deadline: float | None) -> None:
        """Once a signal's grace period is over, stop these workers (their items are abandoned)."""
        if deadline is not None and time.monotonic() >= deadline:
            for w in workers:
                if w.kill_reason is None:
                    self.kill(w, None)

    def check_timers(self) -> None:
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
                self.kill(
                    w,
                    f"TimeoutError: item ran longer than --timeout {self.timeout:g}s; "
                    "its worker was stopped and replaced",
                )

    # --- events ---------------------------------------------------------------------------

    def wait(self) -> None:
        timeout = POLL_SECONDS
        if self.timeout is not None:
            timeout = min(timeout, max(self.timeout / 4, 0.01))
        for worker, ended in _events(self.workers, timeout):
            if ended:
                self._drain(worker)
                self._on_death(worker)
            elif not worker.dead:  # its sentinel may have come first in this same batch
                self._drain(worker)

    def _drain(self, w: PoolWorker) -> None:
        for message in _received(w):
            self._on_message(w, message)

    def _on_message(self, w: PoolWorker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            w.ready = True
        elif kind == "fail":
            self.barren_deaths = 0
            _, seq, error, tb, malformed = message
            outcome = Outcome(self.items[seq][0], False, error, tb, malformed=malformed)
            self.book.reported(w, seq, outcome)
        elif kind == "elsewhere":
            _, seq = message
            self.book.reported(w, seq, Outcome(self.items[seq][0], True, elsewhere=True))
        elif kind == "done":
            _, ran, busy = message
            self.book.chunk_done(w, ran, busy)
            if ran:
                self.barren_deaths = 0
        elif kind == "chunk_error":
            _, error, tb = message
            self.book.chunk_unpacked_badly(w, error, tb)
        elif kind == "setup_failed":
            _, error, tb = message
            self.abort(f"task setup failed in a worker: {error}", tb)
        elif kind == "line":  # the worker's print() or task logger, beside the display
            self.reporter.write_line(message[1])

    def _on_death(self, w: PoolWorker) -> None:
        w.dead = True
        w.process.join(0.5)
        exitcode = w.process.exitcode
        try:
            lost = self.book.settle_dead_worker(w, exitcode, self.reporter.note)
            if w.kill_reason is not None or self.book.halting:
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

    def _release(self, w: PoolWorker) -> None:
        self.spawner.release(w)
        self.workers.remove(w)

    def _on_barren_death(self, w: PoolWorker, exitcode: int | None) -> None:
        """A worker died holding no item (in setup, or unpacking its work): never loop on it."""
        self.barren_deaths += 1
        when = "before finishing setup()" if not w.ready else "without running an item"
        self.reporter.note(f"a worker died {when}: {describe_exit(exitcode)}")
        if self.barren_deaths >= max(BARREN_DEATHS_LIMIT, self.num_process):
            self.abort(
                f"{self.barren_deaths} worker processes in a row died {when} "
                f"({describe_exit(exitcode)})",
                w.crash_text(),
            )


def _events(workers: list[PoolWorker], timeout: float) -> list[tuple[PoolWorker, bool]]:
    """(worker, whether its process ended) for each worker with something to read, waiting
    at most `timeout` seconds."""
    if not workers:
        return []
    by_conn = {id(w.conn): w for w in workers}
    by_sentinel = {w.process.sentinel: w for w in workers}
    objects: list[Any] = [w.conn for w in workers] + list(by_sentinel)
    return [
        (by_sentinel[ready], True) if isinstance(ready, int) else (by_conn[id(ready)], False)
        for ready in connection.wait(objects, timeout)
    ]


def _received(w: PoolWorker) -> Iterator[tuple[Any, ...]]:
    """The messages waiting in a worker's pipe; EOF, a closed pipe or a garbled message ends
    them (the worker's sentinel tells the rest)."""
    while True:
        try:
            if not w.conn.poll():
                return
            message = w.conn.recv()
        except Exception:
            return
        yield message
