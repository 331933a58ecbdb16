"""Staging, retired and leftover names: how an attempt's files are named beside their
final path, and how a leftover of a killed attempt is recognised by its name alone."""

from __future__ import annotations

import itertools
import os

from dispatcher.outputs.claims import LOCK_SUFFIX

_POSIX = os.sep == "/"
STAGING_SUFFIX = ".dispatch-part"
RETIRED_SUFFIX = ".dispatch-old"
"""A replaced folder output waits under this name while its successor moves in (under the
item's claim, so one fixed name per output suffices)."""
_MARKERS = (STAGING_SUFFIX, RETIRED_SUFFIX)
COMPLETE_NAME = ".dispatch-complete"
"""Written last into a folder output in an object store whose done check is the folder
itself (a prefix exists as soon as its first member does): never an input."""


def _sibling(final: str, marker: str) -> str:
    head, tail = os.path.split(final)
    return _sibling_in(head, tail, marker)


def _sibling_in(head: str, tail: str, marker: str) -> str:
    # Hidden, beside the final path (so the rename is atomic), and ending with the same
    # extension, so libraries that choose a format by extension write the right one.
    root, ext = os.path.splitext(tail)
    name = f".{root}{marker}{ext}"
    if _POSIX and head and head[-1] != "/":
        return f"{head}/{name}"  # the common case, without os.path.join's checks
    return os.path.join(head, name)


_token_prefix = ""
_token_count = itertools.count()


def _new_token_prefix() -> None:
    # Drawn once per process (again in a forked child, which must not repeat its parent's
    # names), so an attempt's name costs no system call: process id, random hex, counter.
    global _token_prefix, _token_count
    _token_prefix = f"{os.getpid()}-{os.urandom(4).hex()}"
    _token_count = itertools.count()


_new_token_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_token_prefix)


def attempt_token() -> str:
    """Unique per attempt: this process's id, its random hex and a count of its attempts
    (never a dot: see leftover_final)."""
    return f"{_token_prefix}{next(_token_count):x}"


def staging_path(final: str, token: str | None = None) -> str:
    """A staging name of `final`: `a/b.mp4.json` -> `a/.b.mp4.dispatch-part-<token>.json`."""
    return _sibling(final, f"{STAGING_SUFFIX}-{token or attempt_token()}")


def staging_path_in(head: str, tail: str) -> str:
    """`staging_path` of `head/tail`, for a caller that has split it already."""
    return _sibling_in(head, tail, f"{STAGING_SUFFIX}-{attempt_token()}")


def retired_path(final: str) -> str:
    """Where an existing folder output waits while its replacement is moved in."""
    return _sibling(final, RETIRED_SUFFIX)


def is_staging_name(name: str) -> bool:
    """Whether a file name is a staging, retired or lock leftover (never a real output)."""
    return name.startswith(".") and leftover_final(name) is not None


def leftover_final(name: str) -> str | None:
    """The name of the output a leftover belongs to (in the same folder), or None.

    `.b.mp4.dispatch-part-12-ab.json` and `.b.mp4.dispatch-part.json` -> `b.mp4.json`;
    `.b.dispatch-old.txt` -> `b.txt`; `.b.json.dispatch-lock` -> `b.json`.
    """
    if not name.startswith("."):
        return None
    if name.endswith(LOCK_SUFFIX):
        return name[1 : -len(LOCK_SUFFIX)] or None
    for marker in _MARKERS:
        root, found, rest = name[1:].rpartition(marker)
        if not found or not root:
            continue
        if rest.startswith("-"):  # a token: everything up to the extension
            dot = rest.find(".")
            rest = "" if dot < 0 else rest[dot:]
        if rest and not rest.startswith("."):
            continue
        return root + rest
    return None
