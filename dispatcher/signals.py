"""SIGINT / SIGTERM: stop starting new items, give in-flight ones a grace period, exit 130/143.

SLURM sends SIGTERM on scancel, time limit and preemption, then SIGKILL after KillWait
(30 s by default), so the default grace stays well under that.
"""

from __future__ import annotations

import signal
import threading
import types
from typing import Any

DEFAULT_GRACE_SECONDS = 10.0


class GraceExpired(BaseException):
    """Raised in the main thread when in-flight work outlives the grace period."""


class StopSignal:
    """Records the first SIGINT/SIGTERM; backbones poll `is_set()` between items."""

    def __init__(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace = grace
        self.signum: int | None = None
        self.received_at: float | None = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._interrupt_in_place = False

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def interrupt_in_place(self) -> None:
        """For in-process backbones: after the grace period, raise GraceExpired in the main thread."""
        self._interrupt_in_place = True

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        import time

        if self.signum is None:
            self.signum = signum
            self.received_at = time.monotonic()
            self._event.set()
            if self._interrupt_in_place:
                signal.signal(signal.SIGALRM, self._expire)
                signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))
        elif self._interrupt_in_place:
            raise GraceExpired()

    def _expire(self, signum: int, frame: types.FrameType | None) -> None:
        raise GraceExpired()

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._interrupt_in_place:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
