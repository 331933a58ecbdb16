"""Errors that are the user's to fix (exit code 2).

Configuration problems end a run before any item starts; they are collected and reported
together, one line each, so a user fixes them in one round instead of discovering them one
run at a time. An item's input that cannot be read (`MalformedInput`) is found only where the
item loads, so the run goes on and names every such input at its end.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK, EXIT_USAGE = 0, 2
"""Every item succeeded; a usage or configuration error (1 is a failed item, 130/143 a signal)."""


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
