"""Errors that are the user's to fix (exit code 2), and every exit code a run ends with.

Configuration problems end a run before any item starts; they are collected and reported
together, one line each, so a user fixes them in one round instead of discovering them one
run at a time. An item's input that cannot be read (`MalformedInput`) is found only where the
item loads, so the run goes on and names every such input at its end.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable
from typing import Protocol

EXIT_OK = 0
"""Every item succeeded (or there was nothing to do)."""
EXIT_FAILED = 1
"""Some item failed, or the run was aborted (a failing setup, a crashed engine)."""
EXIT_USAGE = 2
"""A usage or configuration error (nothing ran), or malformed input (the other items ran)."""


def signal_exit_code(signum: int) -> int:
    """The shell's exit status for a run ended by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


EXIT_SIGINT = signal_exit_code(signal.SIGINT)
EXIT_SIGTERM = signal_exit_code(signal.SIGTERM)


def signal_name(signum: int) -> str:
    """SIGTERM, SIGKILL, ... for messages."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Tally(Protocol):
    """What the exit code is decided from: a finished run's counts."""

    failed: int
    malformed_inputs: int
    ran: int


def run_exit(counts: Tally, aborted: str | None, signum: int | None) -> tuple[int, str]:
    """(exit code, outcome) of a finished run: a signal first, then an abort, malformed
    inputs, failed items; otherwise success. The run record keeps both."""
    if signum is not None:
        return signal_exit_code(signum), f"interrupted by {signal_name(signum)}"
    if aborted is not None:
        return EXIT_FAILED, f"aborted: {aborted}"
    if counts.malformed_inputs:
        return EXIT_USAGE, "malformed input"
    if counts.failed:
        return (
            EXIT_FAILED,
            "every item failed" if counts.failed == counts.ran else "some items failed",
        )
    return EXIT_OK, "success"


class UsageError(Exception):
    """A problem with the command line, the task file or the configuration: exit code 2.

    Holds one or more one-line messages.
    """

    def __init__(self, *messages: str) -> None:
        self.messages = [m for m in messages if m]
        super().__init__("\n".join(self.messages))


class MalformedInput(ValueError):
    """An item's input is malformed (a JSONL line that is not a JSON object, a CSV that
    does not parse): its data is at fault, not the task. Raised where the item loads, with
    a message that names the place (`FILE:LINE: ...`).

    The item fails without retries and writes nothing; the other items still run (one
    pass names every bad input, as reading them all before the run would cost a second
    pass over the data); the run then exits 2 with one `dispatch: error:` line each.
    """


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """A ' (did you mean X?)' suffix naming the closest candidate, or ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


class ErrorList:
    """Collects configuration errors so they are raised together."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def extend(self, other: ErrorList | UsageError) -> None:
        self.messages.extend(other.messages)

    def raise_if_any(self) -> None:
        if self.messages:
            raise UsageError(*self.messages)

    def __bool__(self) -> bool:
        return bool(self.messages)
