"""Inside one device process of a multi-device torch run: setup once on its device, then
batches of whatever its parent sends, until told there is no more.

It is a `TorchRun` whose items arrive while it runs (`torch_feed.Feed`) and whose outcomes
go back to the parent (`RemoteLedger`): the parent keeps the plan, the retries, the
progress and the run record. Signals as in an `mp` worker: SIGINT is ignored and SIGTERM
is the parent's to act on; the parent halts a device through the shared state (no new
batches, the ones in flight are written) and abandons it (ABORT, then SIGTERM) once the
grace period is over.
"""

from __future__ import annotations

import argparse
import os
import pickle
import threading
from typing import Any

from backbones.mp.worker import supervised
from backbones.torch.device import DeviceChoice
from backbones.torch.run import TorchRun
from dispatcher.engines import Outcome, Stage

# Slots of the shared state array (doubles). TAKEN is written by the device process (how
# many items its loader has taken, in the order they were sent); the rest by the parent.
TAKEN, ABORT, HALT, DEADLINE = range(4)
STATE_SLOTS = 4


class Link:
    """Messages to the parent, from any thread of this process."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            self.conn.send_bytes(data)


class RemoteReporter:
    """What a `TorchRun` tells its reporter, told to the parent instead."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def note(self, text: str) -> None:
        self.link.send(("note", text))

    def abort(self, error: str, traceback: str | None = None) -> None:
        self.link.send(("abort", error, traceback))


class RemoteStop:
    """The parent's stop, read from the shared state: halted, and by when."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def is_set(self) -> bool:
        return bool(self.state[HALT])

    def deadline(self) -> float | None:
        return self.state[DEADLINE] or None  # time.monotonic() is the same clock here

    def interrupt_in_place(self) -> None:
        """The parent enforces the deadline (it abandons this process)."""

    def cancel_interrupt(self) -> None:
        pass


class RemoteLedger:
    """Outcomes of the items this process took, sent to the parent once each."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.lock = threading.Lock()
        self.keys: dict[int, str] = {}
        self.closed = False

    def expect(self, entries: list[tuple[int, tuple[str, Any]]]) -> None:
        with self.lock:
            for seq, (key, _) in entries:
                self.keys[seq] = key

    def key(self, ref: int) -> str:
        return self.keys[ref]

    def record(self, ref: int, outcome: Outcome) -> None:
        self.record_batch([ref], [outcome])

    def record_batch(self, refs: list[int], outcomes: list[Outcome]) -> None:
        ok: list[int] = []
        elsewhere: list[int] = []
        failures: list[tuple[int, str | None, str | None, str | None]] = []
        with self.lock:
            if self.closed:
                return
            for ref, outcome in zip(refs, outcomes, strict=False):
                if self.keys.pop(ref, None) is None:
                    continue
                if not outcome.ok:
                    failures.append((ref, outcome.error, outcome.traceback, outcome.malformed))
                elif outcome.elsewhere:
                    elsewhere.append(ref)
                else:
                    ok.append(ref)
            if ok or elsewhere or failures:
                self.link.send(("settled", ok, elsewhere, failures))

    def take_again(self) -> list[int]:
        return []  # the parent decides retries

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, completed: bool) -> None:
        self.close()


class DeviceRun(TorchRun):
    """A `TorchRun` on this process's device over the items the parent sends."""

    def __init__(
        self,
        options: argparse.Namespace,
        choice: DeviceChoice,
        stage: Stage,
        feed: Any,
        link: Link,
        stop: RemoteStop,
    ) -> None:
        self.link = link
        self.feed = feed
        super().__init__(options, choice, stage, [], RemoteReporter(link), stop)
        feed.taken = self.ledger.expect

    def _ledger(self) -> RemoteLedger:
        return RemoteLedger(self.link)

    def _run_batches(self) -> bool:
        """Passes over the fed items until the parent has no more; True at the end."""
        self.link.send(("ready",))
        completed = True
        try:
            while completed and self.feed.wait_for_work(self.stop.is_set):
                completed = self._pass([])
        finally:
            self.ledger.close()
        return completed and not self.stop.is_set()

    def _stream(self, refs: list[int]) -> Any:
        from backbones.torch.feed import FedPackStream

        self.refs = None  # a pack's positions are plan positions already
        return FedPackStream(
            self.feed, self.stage, self.settings, self.stop.is_set, self.reporter.note
        )

    def _record(self, refs: list[int], outcomes: list[Outcome]) -> None:
        self.ledger.record_batch(refs, outcomes)


def device_main(
    stage: Stage,
    name: str,
    choice: DeviceChoice,
    options: argparse.Namespace,
    conn: Any,
    state: Any,
    parent_pid: int,
    inherited_fds: list[int],
    crash_log: str,
) -> None:
    """Entry point of a device process (started with SIGINT/SIGTERM blocked).

    `DISPATCH_DEVICE` names its device for the task's code (`cuda:1`, or `cpu#1` among
    several simulated cpus).
    """
    from backbones.torch.feed import Feed

    os.environ["DISPATCH_DEVICE"] = name

    with supervised(parent_pid, inherited_fds, crash_log, lambda: state[ABORT]) as parent:
        if parent is None:
            return
        link = Link(conn)

        def count_taken(n: int) -> None:
            state[TAKEN] += n

        feed = Feed(conn, link.send, count_taken)
        feed.start()
        DeviceRun(options, choice, stage, feed, link, RemoteStop(state)).run()
