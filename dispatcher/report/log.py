"""The `dispatcher` logger: every line the dispatcher says beside its results.

Lines go to stderr as `dispatch: TEXT`, with `note: ` / `warning: ` / `error: ` before the
text for those levels (`NOTE`, `WARNING`, `ERROR`). While a run shows its progress, the
progress display writes them, so a line never tears a progress bar.

The handler is installed once per process, when this module is first imported
(`configure` again is a no-op). It does not propagate to the root logger, so a program that
configured logging for itself does not see each line twice; it looks `sys.stderr` up at
each line, so whatever replaced stderr since (pytest's `capsys`, a redirect) receives it.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from typing import Protocol

NOTE = 25
"""Between INFO and WARNING: a line the user should read, not a fault (`dispatch: note:`)."""
logging.addLevelName(NOTE, "NOTE")

_TAGS = {NOTE: "note: ", logging.WARNING: "warning: ", logging.ERROR: "error: "}

logger = logging.getLogger("dispatcher")


class Display(Protocol):
    """What shows progress and can write a whole line beside it (`Progress`)."""

    def write(self, text: str) -> None: ...


class _Shown:
    """The display shown now in this process, if any (held weakly: a display nobody
    closed goes away with its reporter)."""

    display: weakref.ReferenceType[Display] | None = None
    pid = 0


def show(display: Display) -> None:
    """Route the dispatcher's lines through `display` until `hide(display)`."""
    _Shown.display = weakref.ref(display)
    _Shown.pid = os.getpid()


def hide(display: Display) -> None:
    """Lines go straight to stderr again (unless another display was shown since)."""
    if _Shown.display is not None and _Shown.display() is display:
        _Shown.display = None


def _shown() -> Display | None:
    if _Shown.display is None or _Shown.pid != os.getpid():
        return None  # a forked child writes its own lines, never through the parent's bar
    return _Shown.display()


class DispatchFormatter(logging.Formatter):
    """`dispatch: [note: |warning: |error: ]TEXT`; a record with `bare=True` is TEXT alone."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if getattr(record, "bare", False):
            return text
        return f"dispatch: {_TAGS.get(record.levelno, '')}{text}"


class StderrHandler(logging.Handler):
    """Writes each line through the shown progress display, else to `sys.stderr` as it is
    when the line is written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(DispatchFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            display = _shown()
            if display is not None:
                display.write(text)
                return
            stream = sys.stderr
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure() -> logging.Logger:
    """Give the `dispatcher` logger its one stderr handler; idempotent."""
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def note(text: str) -> None:
    """`dispatch: note: TEXT`."""
    logger.log(NOTE, text)


configure()
