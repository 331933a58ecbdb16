"""The items of an `mp` run, as the supervisor keeps them: what each worker holds, what is
still to send, what to retry, and every item's outcome settled exactly once.

The supervisor (`backbones/mp/pool.py`) runs the processes; it tells the book what a worker
said or how it died, and the book decides what became of the items involved.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any

from backbones.mp import worker as W
from dispatcher.engines import (
    Item,
    Outcome,
    Reporter,
    Retries,
    RunLease,
    Stage,
    error_line,
    signal_name,
)

TARGET_CHUNK_SECONDS = 0.05
"""Automatic chunks aim at this much work, so one pipe round trip is noise beside it."""
MAX_AUTO_CHUNK = 512
PREFETCH_MAX_BYTES = 64 * 1024
"""A waiting chunk must fit the pipe's buffer, so sending it never blocks the supervisor."""

_SIGNAL_HINTS = {
    signal.SIGKILL: "killed: out of memory, or killed from outside",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
}


def describe_exit(exitcode: int | None, who: str = "worker process") -> str:
    """A worker's death in words, for the failure record of the item it held."""
    if exitcode is None:
        return f"{who} vanished"
    if exitcode < 0:
        sig = -exitcode
        hint = _SIGNAL_HINTS.get(sig)  # type: ignore[call-overload]
        return f"{who} died of {signal_name(sig)}" + (f" ({hint})" if hint else "")
    return f"{who} exited with code {exitcode}"


def read_crash_log(path: str) -> str | None:
    """What a child's fault handler wrote (a segfault's traceback), if anything."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return text or None


def clear_abandoned(stage: Stage, key: str, note: Callable[[str], None]) -> None:
    """A child killed mid-item (SIGKILL after the grace period, the OOM killer) could not
    remove its staging: do it once it is reaped, unless a live run holds the item."""
    try:
        stage.source.clear_abandoned(key)
    except Exception as exc:
        note(f"could not remove what the killed attempt at {key} left: {exc}")


class ItemQueue:
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
class PoolWorker:
    """The parent's view of one worker process."""

    process: Any
    conn: connection.Connection
    state: Any
    crash_log: str
    ready: bool = False
    chunks: collections.deque[list[int]] = field(default_factory=collections.deque)
    """Items sent and not yet answered by a "done", chunk by chunk (the first one runs)."""
    alone: set[int] = field(default_factory=set)
    """The first items of the chunks in `chunks` that were sent to run alone (the run's
    lease let them commit without per-item claims)."""
    resolved: set[int] = field(default_factory=set)
    """Items of `chunks` already settled by a "fail" message."""
    assigned: int = 0
    acked: int = 0
    retiring: bool = False
    kill_reason: tuple[int, str | None] | None = None
    """(item, why) when the parent is stopping this worker; why None: abandoned, not failed."""
    kill_at: float | None = None
    dead: bool = False
    """Its process has ended; it is being released (only the supervisor's death handler
    sets this)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def pop_chunk(self) -> list[int]:
        """The chunk in hand, answered or lost: it no longer runs."""
        chunk = self.chunks.popleft()
        if chunk:
            self.alone.discard(chunk[0])
        return chunk

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.kill(self.pid, signum)

    def crash_text(self) -> str | None:
        return read_crash_log(self.crash_log)


class ItemBook:
    """Every item of the run, from pending to settled; each settled exactly once."""

    def __init__(
        self,
        stage: Stage,
        items: list[Item],
        reporter: Reporter,
        retries: int,
        workers: int,
        fixed_chunk: int | None,
        max_tasks: int | None,
        lease: RunLease | None = None,
    ) -> None:
        self.stage = stage
        self.lease = lease
        self.items = items
        self.reporter = reporter
        self.retries = Retries(retries, reporter.note)
        self.workers = workers
        self.fixed_chunk = fixed_chunk
        self.max_tasks = max_tasks
        self.pending = ItemQueue(len(items))
        self.suspects: set[int] = set()
        """Items of a chunk that could not be unpacked in a worker: sent one at a time."""
        self.mean_item: float | None = None
        self.halting = False
        """No item goes back to the queue or is retried once the run is halting."""

    # --- sending -------------------------------------------------------------------------

    def chunk_size(self, w: PoolWorker) -> int:
        if self.fixed_chunk is not None:
            size = self.fixed_chunk
        else:
            if self.mean_item is None:
                size = 1
            else:
                size = int(TARGET_CHUNK_SECONDS / max(self.mean_item, 1e-7))
                size = max(1, min(size, MAX_AUTO_CHUNK))
            # Near the end, smaller chunks keep every worker busy until the last item.
            size = min(size, max(1, math.ceil(len(self.pending) / (2 * self.workers))))
        if self.max_tasks is not None:
            size = min(size, self.max_tasks - w.assigned)
        return max(1, size)

    def send_chunk(self, w: PoolWorker, prefetch: bool) -> bool:
        """Send the worker its next chunk; False if a prefetch was too big to send now."""
        seqs = self.pending.take(self.chunk_size(w), self.suspects)
        chunk = [(seq, self.items[seq]) for seq in seqs]
        alone = self.lease is not None and self.lease.alone()
        try:
            data = pickle.dumps((alone, chunk), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            chunk, data = self._drop_unpicklable(chunk, alone)
            seqs = [seq for seq, _ in chunk]
            if not chunk:
                return True
        if prefetch and len(data) > PREFETCH_MAX_BYTES:
            self.pending.put_front(seqs)
            return False
        w.chunks.append(seqs)
        if alone:
            w.alone.add(seqs[0])
        w.assigned += len(seqs)
        # If the worker died, its sentinel says so and the chunk's items go back.
        with contextlib.suppress(OSError):
            w.conn.send_bytes(data)
        return True

    def _drop_unpicklable(
        self, chunk: list[tuple[int, Item]], alone: bool
    ) -> tuple[list[tuple[int, Item]], bytes]:
        good = []
        for seq, item in chunk:
            try:
                pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                self.settle(
                    seq,
                    Outcome(item[0], False, f"item cannot be sent to a worker: {error_line(exc)}"),
                    retry=False,
                )
            else:
                good.append((seq, item))
        return good, pickle.dumps((alone, good), protocol=pickle.HIGHEST_PROTOCOL)

    # --- what workers say ------------------------------------------------------------------

    def reported(self, w: PoolWorker, seq: int, outcome: Outcome) -> bool:
        """An item of the running chunk reported on its own (failed, or made elsewhere)."""
        if w.chunks and seq in w.chunks[0] and seq not in w.resolved:
            w.resolved.add(seq)
            self.settle(seq, outcome)
            return True
        return False

    def chunk_done(self, w: PoolWorker, ran: int, busy: float) -> None:
        self.close_chunk(w, ran)
        if ran:
            per_item = busy / ran
            self.mean_item = (
                per_item if self.mean_item is None else (0.7 * self.mean_item + 0.3 * per_item)
            )

    def chunk_unpacked_badly(self, w: PoolWorker, error: str, tb: str | None) -> None:
        if w.chunks:
            w.resolved = set()
            self.isolate(w.pop_chunk(), error, tb)

    def close_chunk(self, w: PoolWorker, finished: int) -> None:
        """The first `finished` items of the worker's chunk ran; the rest never started."""
        if not w.chunks:
            return
        chunk, resolved = w.pop_chunk(), w.resolved
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
                self.unstarted(seq)

    def isolate(self, chunk: list[int], error: str, tb: str | None) -> None:
        """A chunk that could not be unpacked in a worker (none of it ran): find the culprit.

        A chunk of several items goes out again one item at a time, so items that did
        nothing wrong still run; a chunk of one item has found it: that item fails.
        """
        if len(chunk) == 1:
            self.suspects.discard(chunk[0])
            self.settle(chunk[0], Outcome(self.items[chunk[0]][0], False, error, tb))
            return
        self.suspects.update(chunk)
        for seq in chunk:
            self.unstarted(seq)

    # --- a dead worker's items -------------------------------------------------------------

    def settle_dead_worker(
        self, w: PoolWorker, exitcode: int | None, note: Callable[[str], None]
    ) -> bool:
        """Settle the items a dead worker held; True if one of them was settled failed."""
        lost = False
        if w.chunks:
            finished = int(w.state[W.COMPLETED]) - w.acked
            running = int(w.state[W.RUNNING])
            chunk = w.chunks[0]
            receiving = finished == 0 and running < 0
            if receiving and w.kill_reason is None and not w.retiring and not self.halting:
                # Died between receiving a chunk and starting it (unpickling an item crashed?).
                w.pop_chunk()
                w.resolved = set()
                lost = len(chunk) == 1
                error = f"WorkerDied: {describe_exit(exitcode)} while receiving this item"
                self.isolate(chunk, error, w.crash_text())
            elif self._batch_lost(w, chunk, finished, running):
                # A batch is one call: which of its items killed the worker is unknown, so
                # each goes out again alone and only the one that kills a worker fails.
                w.pop_chunk()
                w.resolved = set()
                for seq in chunk:
                    clear_abandoned(self.stage, self.items[seq][0], note)
                error = f"WorkerDied: {describe_exit(exitcode)} while running this item"
                self.isolate(chunk, error, w.crash_text())
                lost = True  # an item's doing, not a barren worker
            else:
                held = finished < len(chunk) and chunk[finished] == running
                if held and running not in w.resolved:
                    w.resolved.add(running)
                    lost = True
                    self._lost_item(w, running, exitcode, note)
                self.close_chunk(w, finished)
        for rest in w.chunks:
            for seq in rest:
                self.unstarted(seq)
        w.chunks.clear()
        w.alone.clear()
        return lost

    def _batch_lost(self, w: PoolWorker, chunk: list[int], finished: int, running: int) -> bool:
        """A batched stage's chunk (several items, one call) died of its own while running."""
        return (
            self.stage.batched
            and len(chunk) > 1
            and finished == 0
            and running == chunk[0]
            and not w.resolved
            and w.kill_reason is None
            and not w.retiring
            and not self.halting
        )

    def _lost_item(
        self, w: PoolWorker, seq: int, exitcode: int | None, note: Callable[[str], None]
    ) -> None:
        """The item a worker was running when it died."""
        key = self.items[seq][0]
        clear_abandoned(self.stage, key, note)
        if w.kill_reason is not None:
            killed_seq, reason = w.kill_reason
            if reason is None or killed_seq != seq:
                self.unstarted(seq)  # abandoned at a stop: not run, a rerun does it
                return
            self.settle(seq, Outcome(key, False, reason, w.crash_text()))
            return
        error = f"WorkerDied: {describe_exit(exitcode)} while running this item"
        note(f"{error.split(': ', 1)[1]} ({key}); starting a replacement")
        self.settle(seq, Outcome(key, False, error, w.crash_text()))

    # --- settling --------------------------------------------------------------------------

    def settle(self, seq: int, outcome: Outcome, retry: bool = True) -> None:
        """Record an item's final outcome, or queue it again while retries remain."""
        if self.retries.again(seq, outcome, allowed=retry and not self.halting):
            self.pending.retry(seq)
            return
        self.reporter.record_outcome(outcome)

    def unstarted(self, seq: int) -> None:
        if not self.halting:
            self.pending.give_back(seq)
