"""Claims: one live attempt at a time stages and commits an item's outputs.

An attempt holds an exclusive `flock` on a hidden lock file beside the item's final path
(`a/b.json` -> `a/.b.json.dispatch-lock`) from staging to commit. Two runs over the same
output root (a double submission, overlapping shards) then take turns on an item instead
of writing it at the same time. The lock dies with its process, so a killed attempt
never blocks anyone; its lock file stays behind, and whoever takes it next knows that an
attempt died there and that its staging leftovers are to be removed.

The holder unlinks the lock file while still holding it, so a waiter that locked the
unlinked file notices (its inode is no longer the one at the path) and starts over on
the new one: no two attempts ever hold "the" lock at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator

LOCK_SUFFIX = ".dispatch-lock"
_NO_LOCKS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL)
"""What `flock` fails with on a filesystem that does not support it."""
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
POLL_SECONDS = 0.05
"""How often a waiting attempt tries the lock again (short sleeps keep signals prompt)."""


def lock_path(final: str) -> str:
    """The lock file of the item whose output is `final`."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}{LOCK_SUFFIX}")


class Claim:
    """The right to stage and commit the output at `final`, held by one attempt at a time."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.path = lock_path(final)
        self.fd: int | None = None
        self.orphaned = False
        """Set on acquiring: the lock file was left by an attempt that died holding it."""
        self.waited = False
        """Set on acquiring: another live attempt held the item first."""
        self.unlocked = False
        """Set on acquiring where the filesystem has no locks: held by nobody in particular."""
        self.batch = False
        """Held for a whole batch by `hold_all` (its items' outputs are written in one call)."""

    def try_acquire(self) -> bool:
        """Take the claim if no live attempt holds it; never waits."""
        while True:
            existed = False
            try:
                fd = os.open(self.path, _CREATE, 0o644)
            except FileExistsError:
                existed = True
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # released between the two opens: create it afresh
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    os.close(fd)
                    raise
                # A filesystem without locks (Lustre mounted without flock, say): go on
                # unclaimed. Per-attempt staging names still keep every output whole; only
                # the turn-taking, and removing leftovers that might be a live attempt's, go.
                os.close(fd)
                if not existed:
                    _unlink(self.path)
                self.unlocked = True
                return True
            except BaseException:
                os.close(fd)
                raise
            if same_file(fd, self.path):
                self.fd, self.orphaned = fd, existed
                return True
            os.close(fd)  # the holder unlinked it as we locked it: try the new one

    def acquire(self) -> None:
        """Take the claim, waiting (by polling, so signal handlers run) while it is held."""
        while not self.try_acquire():
            self.waited = True
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Unlink the lock file while still holding it, then let go."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            _unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> Claim:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 (not contextlib.suppress: this runs once per item)
        os.unlink(path)
    except FileNotFoundError:
        pass


def same_file(fd: int, path: str) -> bool:
    """Whether the open file `fd` is still the file at `path` (not unlinked or replaced)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_ino, mine.st_dev) == (at_path.st_ino, at_path.st_dev)


_held: dict[str, Claim] = {}
"""Claims this process holds for a batch, by lock path: staging one of its items reuses
the claim instead of waiting on itself."""
_held_lock = threading.Lock()


def held_for_batch(final: str) -> Claim | None:
    """The claim of `final` if this process holds it for a batch."""
    if not _held:
        return None  # the common case, answered without the lock or the lock path
    with _held_lock:
        return _held.get(lock_path(final))


@contextlib.contextmanager
def hold_all(finals: Iterable[str]) -> Iterator[list[Claim]]:
    """Claim several items at once, never waiting while holding one: take each without
    waiting; if one is busy, let go of all, wait for that one alone (then let it go too)
    and start over. Two batches that share items therefore never deadlock."""
    wanted = sorted(set(finals))
    while True:
        claims: list[Claim] = []
        busy = None
        try:
            for final in wanted:
                claim = Claim(final)
                if not claim.try_acquire():
                    busy = claim
                    break
                claims.append(claim)
        except BaseException:
            for claim in claims:
                claim.release()
            raise
        if busy is None:
            break
        for claim in claims:
            claim.release()
        busy.acquire()
        busy.release()
    with _held_lock:
        for claim in claims:
            claim.batch = True
            _held[claim.path] = claim
    try:
        yield claims
    finally:
        with _held_lock:
            for claim in claims:
                _held.pop(claim.path, None)
        for claim in claims:
            claim.release()
