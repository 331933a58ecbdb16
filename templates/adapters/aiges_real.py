"""The installed real aiges SDK, made to run wrapper files written like its document.

aiges 0.16.0's `ResponseData` has `data` and `len` as read-only properties (set through
`setData`) and drops the `data` its constructor is given, while the aiges document and the
stand-in SDK set `l.data = ...; l.len = ...`. So that a wrapper runs here the same with
either SDK, the real class is adapted in the worker: the assignments do what `setData`
does, a constructor's `data` is kept, and the run says once, in one line naming the first
place, that the aiges server rejects that code and `setData` is the call to use. The real
classes stay the ones the wrapper gets (everything else the SDK does is the SDK's own).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from dispatcher.report.log import note
from templates.adapters.aiges_sdk import is_stand_in

NOTE_FILE = "aiges-sdk-note-{kind}.txt"
"""In the run's log folder: a note already said (each is said once per run)."""
_said: set[str] = set()


def adapt(run_dir: str | None) -> None:
    """Adapt the real `aiges.dto.ResponseData` the wrapper imported (idempotent); the
    stand-in, or a class of another shape, is left as it is."""
    module = sys.modules.get("aiges.dto")
    cls = getattr(module, "ResponseData", None)
    if module is None or is_stand_in(module) or not isinstance(cls, type):
        return
    if cls.__dict__.get("_dispatch_adapted") or not _known_layout(cls):
        return
    say = functools.partial(_say_once, run_dir)
    for name, field in (("data", "_data"), ("len", "_len")):
        attr = cls.__dict__.get(name)
        if isinstance(attr, property) and attr.fset is None:
            setattr(cls, name, property(attr.fget, _setter(name, field, say), None, attr.__doc__))
    cls.__init__ = _keeping_data(cls.__init__, say)  # type: ignore[misc]
    cls._dispatch_adapted = True  # type: ignore[attr-defined]


def _known_layout(cls: type) -> bool:
    """Whether `setData` keeps the value in `_data` and `_len` (as 0.16.0 does)."""
    try:
        probe = cls()
        probe.setData(b"ab")
    except Exception:
        return False
    return vars(probe).get("_data") == b"ab" and vars(probe).get("_len") == 2


def _setter(name: str, field: str, say: Callable[[str, str], None]) -> Callable[[Any, Any], None]:
    def assign(self: Any, value: Any) -> None:
        say("setter", _rejected(name))  # `data` and `len`: one note, the same fix
        setattr(self, field, value)
        if name == "data" and value is not None:  # as setData: len follows the data
            with contextlib.suppress(TypeError):
                self._len = len(value)

    return assign


def _rejected(name: str) -> str:
    return (
        f"the installed aiges SDK's ResponseData has no setter for `{name}` ({_caller()}): "
        "this fails on the aiges server; call setData(data) there instead (it sets data "
        "and len). Run here as setData"
    )


def _keeping_data(init: Callable[..., None], say: Callable[[str, str], None]) -> Any:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        init(self, *args, **kwargs)
        given = signature.bind(self, *args, **kwargs).arguments.get("data")
        dropped = isinstance(given, (bytes, bytearray, str)) and given
        if dropped and getattr(self, "data", None) in ("", b""):
            say(
                "constructor-data",
                f"the installed aiges SDK's ResponseData drops the data given to it "
                f"({_caller()}): the aiges server answers it empty; call setData(data) "
                "instead. Run here as setData",
            )
            self.setData(given)

    return __init__


def _caller() -> str:
    """FILE:LINE of the wrapper code that made the call (the first frame outside here)."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


def _say_once(run_dir: str | None, kind: str, text: str) -> None:
    """Print `text` as a note once per run, whichever worker process meets it first: that
    process creates the note's file in the run's log folder (holding the text)."""
    if kind in _said:
        return
    _said.add(kind)
    if run_dir is not None:
        try:
            fd = os.open(
                os.path.join(run_dir, NOTE_FILE.format(kind=kind)),
                os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                0o644,
            )
        except FileExistsError:
            return  # another worker of this run said it
        except OSError:
            pass  # no log folder to agree through: said by this process
        else:
            with open(fd, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
    note(text)
