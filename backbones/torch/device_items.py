"""The items of a `--devices` run, as the parent keeps them: one queue, what each device
process holds, how far ahead each is sent, and every item's outcome settled exactly once.

The pool (`backbones/torch/devices.py`) runs the processes; it tells this book what a
device process said or that it died, and the book decides what became of the items.

A dead device process's items are suspects, not failures: which of them killed it (if any
did) is unknown, so each goes out again by itself, to a process that has shown it can
compute (it settled an item) and holds nothing else; only when no process has and
nothing else is left to run, to any idle one. An item that kills a process it was sent
alone is the culprit: it fails once and is never sent again, and every death it was in
is forgiven. A death stays pending while its suspects are isolated; once they all ran
without killing anything, nothing but the device explains it, and it counts toward
dropping the device.
"""

from __future__ import annotations

import collections
import contextlib
import math
import pickle
import signal
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from backbones.mp.items import ItemQueue, clear_abandoned, read_crash_log
from backbones.torch import device_process as D
from backbones.torch.device import DeviceChoice
from dispatcher.engines import Item, Outcome, Reporter, Retries, Stage, error_line

BATCHES_AHEAD_MARGIN = 3
"""Batches sent beyond what the loader, the compute and the postprocessing queue hold."""
RATE_AFTER_ITEMS = 32
"""A device's speed counts in how much it is sent ahead once it has settled this many."""
DEATHS_PER_DEVICE = 2
"""A device is dropped at this many deaths of its process that no culprit item explains:
restarted once, not twice."""


@dataclass
class Device:
    """One device of the run and what it did, across its process's restarts."""

    choice: DeviceChoice
    name: str
    starts: int = 0
    deaths: int = 0
    """Deaths of its process that count toward dropping it: their items all ran elsewhere."""
    pending: int = 0
    """Deaths of its process whose items are still being run one at a time."""
    parked: bool = False
    """Not restarted until its pending deaths are settled (one more would drop it)."""
    last_death: tuple[str, str | None] = ("", None)
    """Its process's last death in words, and the crash log's text."""
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

    def restartable(self) -> bool:
        """Whether its dead process starts again now: even if all its pending deaths end up
        counted, it would not be dropped."""
        return self.deaths + self.pending < DEATHS_PER_DEVICE

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


def parked_fates(devices: list[Device], live: bool) -> tuple[list[Device], list[Device]]:
    """(to restart, to drop) of the waiting devices: those whose deaths are settled, by
    their count; every one still waiting is dropped when no process is `live` or about to
    be, since none is left to run the items their deaths are waiting on."""
    restart: list[Device] = []
    drop: list[Device] = []
    for device in devices:
        if device.parked and not device.pending:
            device.parked = False
            (drop if device.deaths >= DEATHS_PER_DEVICE else restart).append(device)
    if not live and not restart:
        for device in devices:
            if device.parked:
                device.parked = False
                drop.append(device)
    return restart, drop


def summarize(devices: list[Device], reporter: Reporter) -> None:
    """Each device's share, in the summary and the run record."""
    summaries = [d.summary() for d in devices]
    reporter.record["devices"] = summaries
    for s in summaries:
        rate = s["items_per_second"]
        speed = f", {rate:.1f} items/s" if rate else ""
        extra = " (dropped)" if s["dropped"] else ""
        restarts = f", restarted {s['restarts']}x" if s["restarts"] else ""
        reporter.note(
            f"{s['device']}: {s['items']} items ({s['failed']} failed){speed}{restarts}{extra}"
        )


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
    proven: bool = False
    """It settled an item: it can compute, so it may isolate suspects."""
    alone: int | None = None
    """The suspect it was sent by itself (nothing more is sent until that one settles)."""
    finishing: bool = False
    killing: bool = False
    kill_at: float | None = None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
            self.process.kill() if signum == signal.SIGKILL else self.process.terminate()


def crash_text(p: DeviceProcess) -> str | None:
    return read_crash_log(p.crash_log)


@dataclass
class Death:
    """A device process's death while its items are isolated: forgiven when one of them is
    the culprit, counted against its device once all of them ran without killing."""

    device: Device
    suspects: set[int]
    settled: bool = False

    def __post_init__(self) -> None:
        self.device.pending += 1
        if not self.suspects:
            self._settle(counts=True)

    def cleared(self, seq: int) -> None:
        """`seq` ran (with whatever outcome) and its process lived."""
        self.suspects.discard(seq)
        if not self.suspects:
            self._settle(counts=True)

    def forgive(self) -> None:
        self._settle(counts=False)

    def _settle(self, counts: bool) -> None:
        if not self.settled:
            self.settled = True
            self.device.pending -= 1
            self.device.deaths += int(counts)


class Verdict(NamedTuple):
    """What a device process's death came to: the culprit's key (the death is its doing and
    does not count), or how many items it held go out again one at a time."""

    culprit: str | None = None
    suspects: int = 0


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
        self.suspects: collections.deque[int] = collections.deque()
        """Items a device process died holding: each is sent again by itself."""
        self.deaths_of: dict[int, list[Death]] = {}
        """The pending deaths each suspect was in."""

    def all_settled(self, live: list[DeviceProcess]) -> bool:
        return not self.queue and not self.suspects and not any(p.held for p in live)

    # --- sending --------------------------------------------------------------------------

    def windows(self, live: list[DeviceProcess]) -> dict[int, int]:
        """Items each device may hold, by its speed: a slow device keeps fewer waiting in its
        buffer, so the last items go to whichever device frees up first."""
        rates = {id(p): p.device.rate() for p in live}
        fastest = max((r for r in rates.values() if r), default=0.0)
        # Never more than an even share of what is left: a small run, or its end, is not
        # taken whole by the device that was ready first.
        left = len(self.queue) + len(self.suspects) + sum(len(p.held) for p in live)
        even = max(self.batch, math.ceil(left / max(1, len(live))))
        windows = {}
        for p in live:
            rate = rates[id(p)]
            share = rate / fastest if rate and fastest else 1.0
            window = max(self.least_window, round(self.window * share))
            windows[id(p)] = min(window, even)
        return windows

    def offers(self, p: DeviceProcess, live: list[DeviceProcess]) -> bool:
        """Whether there is something to send `p` now. While suspects wait, a process that
        has shown it can compute takes no new batches: it drains, then isolates them."""
        if p.alone is not None:
            return False
        if self.suspects:
            if self._isolates(p, live):
                return True
            if p.proven:
                return False
        return bool(self.queue)

    def _isolates(self, p: DeviceProcess, live: list[DeviceProcess]) -> bool:
        """Whether `p` takes a suspect by itself now: it holds nothing and has computed (or
        no process has, and nothing but suspects is left to show one can)."""
        if p.held:
            return False
        return p.proven or (not self.queue and not any(q.proven or q.held for q in live))

    def next_batch(self, p: DeviceProcess, live: list[DeviceProcess]) -> tuple[Any, ...] | None:
        """The message carrying the device's next batch, its items now held by it (None
        when none of them could be pickled): a suspect alone, or a batch from the queue."""
        if self.suspects and self._isolates(p, live):
            seqs = [self.suspects.popleft()]
            p.alone = seqs[0]
        else:
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
        p.proven = True
        for seq in ok + elsewhere + [f[0] for f in failures]:
            self._ran(p, seq)
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
            self._ran(p, seq)
            self.settle(seq, Outcome(self.items[seq][0], False, error, tb), retry=False)

    def _ran(self, p: DeviceProcess, seq: int) -> None:
        """`seq` left `p` with an outcome: no longer held, and not the culprit of any death."""
        p.held.pop(seq, None)
        for death in self.deaths_of.pop(seq, ()):
            death.cleared(seq)
        if p.alone == seq:
            p.alone = None

    def settle(self, seq: int, outcome: Outcome, retry: bool = True) -> None:
        """Record an item's final outcome, or queue it again while retries remain."""
        if self.retries.again(seq, outcome, allowed=retry and not self.halting):
            self.queue.retry(seq)
            return
        self.reporter.record_outcome(outcome)

    # --- a dead device process's items ------------------------------------------------------

    def settle_dead(self, p: DeviceProcess, what: str | None) -> Verdict:
        """Settle what a dead device process held.

        `what` is its death in words; None: it was stopped, and its items count as not run.
        Items still waiting in its buffer go back to the queue. If it died running a suspect
        sent alone, that item is the culprit: failed (not retried), the deaths it was in
        forgiven. Otherwise those its loader had taken become suspects, sent again one at a
        time, and the death is pending until they ran.
        """
        taken = int(p.state[D.TAKEN])
        started = [seq for seq, n in p.held.items() if n < taken]
        waiting = [seq for seq, n in p.held.items() if n >= taken]
        alone, p.alone = p.alone, None
        p.held.clear()
        for seq in started:
            clear_abandoned(self.stage, self.items[seq][0], self.reporter.note)
        if what is None or self.halting:
            return Verdict()
        for seq in waiting:
            if seq == alone:
                self.suspects.appendleft(seq)  # sent, never started: still to isolate
            else:
                self.queue.give_back(seq)
        if alone is not None and started == [alone]:
            return self._culprit(p, alone, what)
        death = Death(p.device, set(started))
        for seq in started:
            self.deaths_of.setdefault(seq, []).append(death)
            self.suspects.append(seq)
        return Verdict(suspects=len(started))

    def _culprit(self, p: DeviceProcess, seq: int, what: str) -> Verdict:
        """`seq` killed `p` by itself: it fails once; the deaths it was in do not count."""
        for death in self.deaths_of.pop(seq, []):
            death.forgive()
        p.device.failed += 1
        key = self.items[seq][0]
        error = f"WorkerDied: this item killed the device process: {what} running it alone"
        self.settle(seq, Outcome(key, False, error, crash_text(p)), retry=False)
        return Verdict(culprit=key)
