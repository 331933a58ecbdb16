"""Removing what killed attempts left (staging, retired and lock names), only ever under
the item's claim so a live attempt's files are never touched."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator

from dispatcher.outputs.claims import LOCK_SUFFIX, Claim
from dispatcher.outputs.names import leftover_final


def remove_path(path: str) -> None:
    """Remove a file, link or folder if present (one system call when absent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def clear_leftovers(final: str) -> None:
    """Remove every staging, retired or lock leftover of `final` (one listing of its folder).

    Call only while holding the item's claim: then no live attempt owns any of them.
    """
    head, tail = os.path.split(final)
    mine = f".{tail}{LOCK_SUFFIX}"  # released (unlinked) by the claim itself
    try:
        names = os.listdir(head or ".")
    except FileNotFoundError:
        return
    for name in names:
        if name != mine and name[:1] == "." and leftover_final(name) == tail:
            remove_path(os.path.join(head, name))


@contextlib.contextmanager
def _claim_if_free(final: str) -> Iterator[Claim | None]:
    """The item's claim for the block if no live attempt holds it (taken without waiting);
    None when one does, or when its folder is gone or cannot be written."""
    claim = Claim(final)
    try:
        taken = claim.try_acquire()
    except OSError:
        taken = False
    try:
        yield claim if taken else None
    finally:
        if taken:
            claim.release()


def remove_leftovers(paths: Iterable[str]) -> int:
    """Remove leftovers (staging, retired, lock names) whose item no live attempt holds.

    Each is removed under its item's claim, taken without waiting: a live attempt's
    staging is never touched (nor anything where the filesystem has no locks, since it
    may be a live attempt's). Returns how many were removed.
    """
    removed = 0
    for path in paths:
        folder, name = os.path.split(path)
        final = leftover_final(name)
        if final is None:
            continue
        with _claim_if_free(os.path.join(folder, final)) as claim:
            if claim is None or claim.unlocked:
                continue
            if path != claim.path:  # a lock file is released (unlinked) by the claim itself
                remove_path(path)
            removed += 1
    return removed


def clear_abandoned(final: str) -> None:
    """After the attempt at `final` was killed: remove its leftovers unless a live attempt
    holds the item now. (The attempt may have held no claim: its run was alone on it.)"""
    with _claim_if_free(final) as claim:
        if claim is not None and not claim.unlocked:
            clear_leftovers(final)
