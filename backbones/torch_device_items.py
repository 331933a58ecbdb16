"""The items of a `--devices` run, as the parent keeps them: one queue, what each device
process holds, how far ahead each is sent, and every item's outcome settled exactly once.

The pool (`backbones/torch_devices.py`) runs the processes; it tells this book what a
device process said or that it died, and the book decides what became of the items.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from backbones import torch_device_process as D
from backbones.mp_items import ItemQueue, clear_abandoned, read_crash_log
from backbones.torch_device import DeviceChoice
from dispatcher.execution import Outcome, error_line
from dispatcher.ledger import Retries
from dispatcher.report import Reporter
from dispatcher.stage import Stage
from dispatcher.task import Item

BATCHES_AHEAD_MARGIN = 3
"""Batches sent beyond what the loader, the compute and the postprocessing queue hold."""
RATE_AFTER_ITEMS = 32
"""A device's speed counts in how much it is sent ahead once it has settled this many."""


@dataclass
class Device:
    """One device of the run and what it did, across its process's restarts."""

    choice: DeviceChoice
    name: str
    starts: int = 0
    dropped: bool = False
    succeeded: int = 0
    failed: int = 0
    ready_at: float | None = None
    last_at: float | None = None

    def rate(self) -> float:
        """Items per second since it was ready (0 until it settled a few batches)."""
        done = self.succeeded + self.failed
        if done < RATE_AFTER_ITEMS or self.ready_at is None or self.last_at is None:
            return 0.0
        busy = self.last_at - self.ready_at
        return done / busy if busy > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        busy = (self.last_at or 0.0) - (self.ready_at or 0.0)
        done = self.succeeded + self.failed
        return {
            "device": self.name,
            "items": done,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "items_per_second": round(done / busy, 3) if busy > 0 else None,
            "restarts": max(0, self.starts - 1),
            "dropped": self.dropped,
        }


@dataclass
class DeviceProcess:
    """The parent's view of one device process."""

    device: Device
    process: Any
    conn: Any
    state: Any
    crash_log: str
    ready: bool = False
    held: dict[int, int] = field(default_factory=dict)
    """Items sent and not settled: plan position -> how many items were sent before it."""
    sent: int = 0
    hungry: bool = False
    finishing: bool = False
    killing: bool = False
    kill_at: float | None = None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
            self.process.kill() if signum == signal.SIGKILL else self.process.terminate()


def crash_text(p: DeviceProcess) -> str | None:
    return read_crash_log(p.crash_log)


class DeviceItems:
    """Every pending item of the run, from the queue to settled; each settled once."""

    def __init__(
        self,
        stage: Stage,
        items: list[Item],
        reporter: Reporter,
        retries: int,
        batch: int,
        ahead: int,
        least: int,
    ) -> None:
        self.stage = stage
        self.items = items
        self.reporter = reporter
        self.retries = Retries(retries, reporter.note)
        self.queue = ItemQueue(len(items))
        self.batch = batch
        self.window = batch * (ahead + BATCHES_AHEAD_MARGIN)
        self.least_window = batch * least
        """What a device's loader and compute hold at once: never sent less ahead."""
        self.halting = False
        """No item goes back to the queue or is retried once the run is halting."""

    def all_settled(self, live: list[DeviceProcess]) -> bool:
        return not self.queue and not any(p.held for p in live)

    # --- sending --------------------------------------------------------------------------

    def windows(self, live: list[DeviceProcess]) -> dict[int, int]:
        """Items each device may hold, by its speed: a slow device keeps fewer waiting in its
        buffer, so the last items go to whichever device frees up first."""
        rates = {id(p): p.device.rate() for p in live}
        fastest = max((r for r in rates.values() if r), default=0.0)
        # Never more than an even share of what is left: a small run, or its end, is not
        # taken whole by the device that was ready first.
        left = len(self.queue) + sum(len(p.held) for p in live)
        even = max(self.batch, math.ceil(left / max(1, len(live))))
        windows = {}
        for p in live:
            rate = rates[id(p)]
            share = rate / fastest if rate and fastest else 1.0
            window = max(self.least_window, round(self.window * share))
            windows[id(p)] = min(window, even)
        return windows

    def next_batch(self, p: DeviceProcess) -> tuple[Any, ...] | None:
        """The message carrying the device's next batch, its items now held by it (None
        when none of them could be pickled)."""
        seqs = self.queue.take(self.batch)
        items = [self.items[seq] for seq in seqs]
        try:
            data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            seqs, items = self._drop_unpicklable(seqs)
            if not seqs:
                return None
            data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        for seq in seqs:
            p.held[seq] = p.sent
            p.sent += 1
        return ("chunk", seqs, data)

    def _drop_unpicklable(self, seqs: list[int]) -> tuple[list[int], list[Item]]:
        keep: list[int] = []
        for seq in seqs:
            try:
                pickle.dumps(self.items[seq], protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                error = f"item cannot be sent to a device process: {error_line(exc)}"
                self.settle(seq, Outcome(self.items[seq][0], False, error), retry=False)
            else:
                keep.append(seq)
        return keep, [self.items[seq] for seq in keep]

    # --- what device processes say ---------------------------------------------------------

    def settled(
        self,
        p: DeviceProcess,
        ok: list[int],
        elsewhere: list[int],
        failures: list[tuple[int, str | None, str | None, str | None]],
    ) -> None:
        device = p.device
        device.last_at = time.monotonic()
        for seq in ok + elsewhere + [f[0] for f in failures]:
            p.held.pop(seq, None)
        device.succeeded += len(ok)
        device.failed += len(failures)
        self.reporter.record_successes([self.items[seq][0] for seq in ok])
        for seq in elsewhere:
            self.reporter.record_outcome(Outcome(self.items[seq][0], True, elsewhere=True))
        for seq, error, tb, malformed in failures:
            self.settle(seq, Outcome(self.items[seq][0], False, error, tb, malformed=malformed))

    def unreadable(self, p: DeviceProcess, seqs: list[int], error: str, tb: str) -> None:
        """Items the device process could not unpickle: failed, not retried."""
        for seq in seqs:
            p.held.pop(seq, None)
            self.settle(seq, Outcome(self.items[seq][0], False, error, tb), retry=False)

    def settle(self, seq: int, outcome: Outcome, retry: bool = True) -> None:
        """Record an item's final outcome, or queue it again while retries remain."""
        if self.retries.again(seq, outcome, allowed=retry and not self.halting):
            self.queue.retry(seq)
            return
        self.reporter.record_outcome(outcome)

    # --- a dead device process's items ------------------------------------------------------

    def settle_dead(self, p: DeviceProcess, what: str | None) -> int:
        """Settle what a dead device process held; returns how many items failed.

        Those its loader had taken fail with `what` (its death in words); None: it was
        stopped, and they count as not run. Those still waiting in its buffer go back to
        the queue (unless the run is halting).
        """
        taken = int(p.state[D.TAKEN])
        started = [seq for seq, n in p.held.items() if n < taken]
        waiting = [seq for seq, n in p.held.items() if n >= taken]
        p.held.clear()
        for seq in started:
            clear_abandoned(self.stage, self.items[seq][0], self.reporter.note)
        if what is None:
            return 0
        p.device.failed += len(started)
        crash = crash_text(p)
        for seq in started:
            error = f"WorkerDied: {what} while running this item"
            self.settle(seq, Outcome(self.items[seq][0], False, error, crash))
        if not self.halting:
            for seq in waiting:
                self.queue.give_back(seq)
        return len(started)
