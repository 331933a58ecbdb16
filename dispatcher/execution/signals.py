"""SIGINT / SIGTERM: stop starting new items, give in-flight ones a grace period, exit 130/143.

SLURM sends SIGTERM on scancel, time limit and preemption (to every process of the job
at once), then SIGKILL after KillWait (30 s by default), so the default grace stays well
under that. A second signal ends the grace period at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from dispatcher.errors import signal_exit_code, signal_name

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "STOP_SIGNALS",
    "ControlFlow",
    "GraceExpired",
    "StopSignal",
    "blocked_stop_signals",
    "signal_exit_code",
    "signal_name",
    "unblock_stop_signals",
]

DEFAULT_GRACE_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ControlFlow(BaseException):
    """The dispatcher's own unwinding (grace expired, worker abandoned), never a task's failure.

    Any other BaseException seen around task code (`sys.exit()`, KeyboardInterrupt,
    GeneratorExit) was raised by the task itself: StopSignal records signals and raises
    nothing but these.
    """


class GraceExpired(ControlFlow):
    """Raised in the main thread when in-flight work outlives the grace period."""


class StopSignal:
    """Records SIGINT/SIGTERM; backbones poll `is_set()` between items.

    Out-of-process backbones compare the clock with `deadline()` to decide when to stop
    their workers; in-process ones call `interrupt_in_place()` to have `GraceExpired`
    raised in the main thread instead.
    """

    def __init__(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace = grace
        self.signum: int | None = None
        self.received_at: float | None = None
        self.count = 0
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._interrupt_in_place = False
        self._timer_armed = False
        self.announce: Callable[[str], None] | None = None
        """Where what a signal does is said, at once (the run's logger); None: silently."""

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else signal_exit_code(self.signum)

    def deadline(self) -> float | None:
        """`time.monotonic()` by which in-flight work must be abandoned; None before a signal.

        A second signal moves the deadline to the moment of the first: stop now.
        """
        if self.received_at is None:
            return None
        return self.received_at + (0.0 if self.count > 1 else self.grace)

    def trigger(self, signum: int) -> None:
        """Act as if `signum` had been received (also what the handler does)."""
        self.count += 1
        if self.announce is not None:
            self.announce(self._what_happens(signum))
        if self.signum is None:
            self.signum = signum
            self.received_at = time.monotonic()
            self._event.set()
            if self._interrupt_in_place:
                self._arm_timer(self.grace)
        elif self._interrupt_in_place:
            self.cancel_interrupt()
            raise GraceExpired()

    def halt(self) -> None:
        """Stop as a first signal would, without one (the run decided to stop: too many
        failures): no new items, in-flight ones get the grace period; no signal's exit code."""
        if self._event.is_set():
            return
        self.received_at = time.monotonic()
        self._event.set()
        if self._interrupt_in_place:
            self._arm_timer(self.grace)

    def _what_happens(self, signum: int) -> str:
        """The line a person who sent `signum` reads at once: a stop that waits is not a hang."""
        name = signal_name(signum)
        if self.count > 1:
            return (
                f"stopping now ({name}): the items in flight are abandoned, their staging removed"
            )
        again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
        return (
            f"stopping ({name}): no new item starts; the items in flight get up to "
            f"{self.grace:g} s to finish ({again} again to stop at once)"
        )

    def interrupt_in_place(self) -> None:
        """For in-process backbones: after the grace period, raise GraceExpired in the main thread."""
        self._interrupt_in_place = True

    def cancel_interrupt(self) -> None:
        """Disarm a pending grace timer (the in-process work ended before it fired)."""
        if self._timer_armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._timer_armed = False
        self._interrupt_in_place = False

    def _arm_timer(self, seconds: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGALRM, self._expire)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
        self._timer_armed = True

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.trigger(signum)

    def _expire(self, signum: int, frame: types.FrameType | None) -> None:
        self._timer_armed = False
        if self._interrupt_in_place:
            self._interrupt_in_place = False
            raise GraceExpired()

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel_interrupt()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def blocked_stop_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM pending while starting child processes.

    Children inherit the blocked mask, so a signal that arrives while a worker is still
    starting waits until the worker has installed its own handlers (it then calls
    `unblock_stop_signals`); the parent receives its copy when the block ends.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_stop_signals() -> None:
    """In a child started under `blocked_stop_signals`, once its handlers are in place."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
