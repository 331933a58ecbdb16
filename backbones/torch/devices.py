"""`--devices`: every device of a node in one run, one process per device, fed from one queue.

The parent keeps the plan's pending items in one queue and sends each device process a
batch at a time, a few batches ahead of what it has finished (enough to keep its
DataLoader busy), and more whenever it asks: a device that finishes early takes more
work, so a slow device or a few long items never leave the others idle, and nothing is
split up front. The parent alone records outcomes and decides retries: one progress bar,
one summary, one run record, with each device's counts and throughput in it.

A device process that dies (a CUDA error, the OOM killer, a segfault, an item that kills
whichever process computes it) is restarted; those of its items still waiting in its
buffer go back to the queue, and those its loader had taken go out again one at a time
(`torch_device_items`), so only an item that kills a process by itself fails. A device
whose process died twice with no such culprit among their items is dropped and the run
goes on on the others; while that is being found out, it waits. On SIGINT/SIGTERM no
device takes new batches, the batches in flight get the grace period, then the device
processes are stopped as `mp` stops its workers.
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

from backbones.mp.items import describe_exit
from backbones.mp.spawn import Spawner
from backbones.torch import device_process as D
from backbones.torch.device import DeviceChoice
from backbones.torch.device_items import (
    Device,
    DeviceItems,
    DeviceProcess,
    crash_text,
    parked_fates,
    summarize,
)
from backbones.torch.feed import DRAIN
from dispatcher.engines import RunContext, Stage, StopSignal, error_line

POLL_SECONDS = 0.2
TERM_WAIT_SECONDS = 2.0
"""After SIGTERM, how long a device process has to unwind before SIGKILL."""


def device_names(choices: list[DeviceChoice]) -> list[str]:
    """Names for the run's devices; repeated cpus are told apart (cpu#0, cpu#1)."""
    if len(choices) > 1 and all(choice.type == "cpu" for choice in choices):
        return [f"cpu#{i}" for i in range(len(choices))]
    return [choice.name for choice in choices]


def start_method(choices: list[DeviceChoice]) -> str:
    """fork for cpus; spawn for accelerators (CUDA and NPU cannot be used after a fork)."""
    return "fork" if all(choice.type == "cpu" for choice in choices) else "spawn"


class DevicePool:
    """Feeds every device process from one queue until every item is settled, then shuts
    them down; `_DeviceProcesses` starts, watches and stops the processes themselves."""

    def __init__(
        self, options: argparse.Namespace, choices: list[DeviceChoice], context: RunContext
    ) -> None:
        stage, items, reporter = context.stage, context.items, context.reporter
        self.options, self.stage, self.items = options, stage, items
        self.reporter, self.stop = reporter, context.stop
        self.devices = [Device(c, n) for c, n in zip(choices, device_names(choices), strict=True)]
        loading = max(1, int(options.num_workers)) * int(options.prefetch_factor)
        self.book = DeviceItems(
            stage,
            items,
            reporter,
            getattr(options, "retries", 0) or 0,
            int(options.batch_size),
            ahead=loading + int(options.postprocess_queue),
            least=loading + 1,
        )
        method = getattr(options, "start_method", None) or start_method(choices)
        self.spawner = Spawner(multiprocessing.get_context(method))
        self.processes = _DeviceProcesses(
            options, stage, self.devices, self.book, self.spawner, self.stop
        )

    def run(self) -> None:
        names = ", ".join(d.name for d in self.devices)
        self.reporter.note(
            f"torch: {len(self.items)} items on {len(self.devices)} devices ({names}; "
            f"{self.spawner.method}, {self.options.num_workers} loader workers each)"
        )
        try:
            for device in self.devices:
                if not self.processes.start(device):
                    break
            self._loop()
        finally:
            self._shutdown()
            self.spawner.close()
            summarize(self.devices, self.reporter)

    def _loop(self) -> None:
        processes, book = self.processes, self.book
        while True:
            if self.stop.is_set():
                processes.halt()
            if not book.halting:
                if book.all_settled(processes.live):
                    return
                self._feed()
            else:
                if not processes.live:
                    return
                processes.kill_past_deadline()
            processes.check_timers()
            self.reporter.tick()
            processes.wait()
            processes.settle_parked()

    def _feed(self) -> None:
        live, send = self.processes.live, self.processes.send
        windows = self.book.windows(live)
        for p in live:
            if not p.ready or p.finishing or p.killing:
                continue
            while (p.hungry or len(p.held) < windows[id(p)]) and self.book.offers(p, live):
                message = self.book.next_batch(p, live)
                if message is not None:
                    send(p, message)
                p.hungry = False
            if p.hungry:  # nothing for it now: its loader's pass ends with what it has
                send(p, (DRAIN,))
                p.hungry = False

    def _shutdown(self) -> None:
        """Tell idle device processes there is no more work; stop the rest; never wait forever."""
        processes = self.processes
        for p in processes.live:
            if p.held and not self.book.halting:
                processes.kill(p)  # only after an error in this loop
            elif not p.finishing:
                p.finishing = True
                processes.send(p, None)
        while processes.live:
            if self.stop.is_set():
                processes.halt()
            processes.kill_past_deadline()
            processes.check_timers()
            processes.wait()


class _DeviceProcesses:
    """The live device processes: started (again after a death), listened to, halted and
    stopped; a device whose deaths no item explains waits, then is restarted or dropped."""

    def __init__(
        self,
        options: argparse.Namespace,
        stage: Stage,
        devices: list[Device],
        book: DeviceItems,
        spawner: Spawner,
        stop: StopSignal,
    ) -> None:
        self.options = options
        self.stage = stage
        self.devices = devices
        self.book = book
        self.reporter = book.reporter
        self.spawner = spawner
        self.stop = stop
        self.live: list[DeviceProcess] = []
        self.deadline_sent: float | None = None

    def halt(self) -> None:
        """No new batches; in-flight ones finish (within a signal's grace period)."""
        self.book.halting = True
        deadline = self.stop.deadline()
        if deadline == self.deadline_sent and all(p.state[D.HALT] for p in self.live):
            return
        self.deadline_sent = deadline
        for p in self.live:
            p.state[D.DEADLINE] = deadline or 0.0
            p.state[D.HALT] = 1

    def abort(self, error: str, tb: str | None = None) -> None:
        self.reporter.abort(error, tb)
        self.halt()

    def start(self, device: Device) -> bool:
        device.starts += 1
        try:
            process, conn, state, crash_log = self.spawner.launch(
                D.device_main,
                (self.stage, device.name, device.choice, self.options),
                [p.conn for p in self.live],
                D.STATE_SLOTS,
                "dispatch-device",
            )
        except Exception as exc:
            self.abort(f"could not start the {device.name} device process: {error_line(exc)}")
            return False
        self.live.append(DeviceProcess(device, process, conn, state, crash_log))
        return True

    def send(self, p: DeviceProcess, message: tuple[Any, ...] | None) -> None:
        # If it died, its sentinel says so and its items are settled then.
        with contextlib.suppress(OSError):
            p.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    # --- events ---------------------------------------------------------------------------

    def wait(self) -> None:
        for p, ended in _events(self.live, POLL_SECONDS):
            if p in self.live:
                self._drain(p)
                if ended:
                    self._on_death(p)

    def _drain(self, p: DeviceProcess) -> None:
        for message in _received(p):
            self._on_message(p, message)

    def _on_message(self, p: DeviceProcess, message: tuple[Any, ...]) -> None:
        kind = message[0]
        device = p.device
        if kind == "settled":
            self.book.settled(p, *message[1:])
        elif kind == "hungry":
            p.hungry = True
        elif kind == "ready":
            p.ready = True
            device.ready_at = device.ready_at or time.monotonic()
        elif kind == "note":
            self.reporter.note(f"{device.name}: {message[1]}")
        elif kind == "unreadable":
            self.book.unreadable(p, *message[1:])
        elif kind == "abort":
            _, error, tb = message
            self.abort(f"{device.name}: {error}", tb)

    def _on_death(self, p: DeviceProcess) -> None:
        p.process.join(0.5)
        exitcode = p.process.exitcode
        device = p.device
        self.live.remove(p)
        try:
            if p.finishing or p.killing or self.book.halting:
                self.book.settle_dead(p, None)  # stopped, or stopping: not run
                if p.finishing and exitcode:
                    self.reporter.note(
                        f"{device.name}: {describe_exit(exitcode, 'device process')}"
                    )
                return
            what = describe_exit(exitcode, f"the {device.name} device process")
            device.last_death = (what, crash_text(p))
            culprit, n = self.book.settle_dead(p, what)
            lost = f"; the {n} item(s) it had taken go again one at a time" if n else ""
            why = f": {culprit} killed it, failed" if culprit is not None else lost
            if culprit is not None or device.restartable():  # a culprit's deaths never count
                self.reporter.note(f"{what}{why}; restarting it")
                self.start(device)
                return
            device.parked = True
            self.reporter.note(f"{what} again{why}; {device.name} waits until they ran")
        finally:
            self.spawner.release(p)

    def settle_parked(self) -> None:
        """Restart or drop the waiting devices whose deaths are settled (`parked_fates`);
        asked after every wait, since an item settling anywhere can settle them."""
        if self.book.halting:
            return
        restart, drop = parked_fates(self.devices, bool(self.live))
        for device in drop:
            self._drop(device)
        for device in restart:
            if not self.book.all_settled(self.live):
                self.reporter.note(f"{device.name}: no item explains its death; restarting it")
                self.start(device)

    def _drop(self, device: Device) -> None:
        device.dropped = True
        what, crash = device.last_death
        self.reporter.note(
            f"{device.name} is dropped from the run: its process died twice and no item it "
            f"held was the cause (last: {what})"
        )
        if all(d.dropped for d in self.devices):
            self.abort(f"every device was dropped; the last: {what}", crash)

    # --- stopping -------------------------------------------------------------------------

    def kill(self, p: DeviceProcess) -> None:
        """Abandon a device's work now: SIGTERM raises in it (staging removed), SIGKILL follows."""
        p.killing = True
        p.state[D.ABORT] = 1
        p.signal(signal.SIGTERM)
        p.kill_at = time.monotonic() + TERM_WAIT_SECONDS

    def kill_past_deadline(self) -> None:
        deadline = self.stop.deadline()
        if deadline is not None and time.monotonic() >= deadline:
            for p in self.live:
                if not p.killing:
                    self.kill(p)

    def check_timers(self) -> None:
        now = time.monotonic()
        for p in self.live:
            if p.kill_at is not None and now >= p.kill_at:
                p.signal(signal.SIGKILL)
                p.kill_at = None


def _events(live: list[DeviceProcess], timeout: float) -> list[tuple[DeviceProcess, bool]]:
    """(device process, whether it ended) for each one with something to read, waiting at
    most `timeout` seconds."""
    if not live:
        return []
    by_conn = {id(p.conn): p for p in live}
    by_sentinel = {p.process.sentinel: p for p in live}
    return [
        (by_sentinel[ready], True) if isinstance(ready, int) else (by_conn[id(ready)], False)
        for ready in connection.wait([p.conn for p in live] + list(by_sentinel), timeout)
    ]


def _received(p: DeviceProcess) -> Iterator[tuple[Any, ...]]:
    """The messages waiting in a device process's pipe; EOF or a closed pipe ends them (the
    sentinel tells the rest)."""
    while True:
        try:
            if not p.conn.poll():
                return
            message = pickle.loads(p.conn.recv_bytes())
        except Exception:
            return
        yield message
