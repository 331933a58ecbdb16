"""Run leases: a run's presence on its output roots, and whether it is alone there.

Per-item claims (`claims.py`) let concurrent runs take turns on an item, at a price of a
lock file created, locked and unlinked per item: on Lustre or NFS that is several round
trips to a metadata server for every output. A run alone on its items needs none of it.
So each run with items to make holds a lease at each output root for its whole length:

- its *presence*: a read lock on its bytes of a hidden lease file (`<root>/.dispatch-lease`)
  that says which items it may touch. The bytes are its shard's: a region per way of
  sharding (the task, where its items come from, the shard specs' kinds and counts), a
  byte per shard index, so the array tasks of one `--shard auto` run, whose items are
  disjoint, never see each other; any other pair of runs (the same shard twice, other
  shard counts, no shards, another input) does.
- its *flag*: while it commits without per-item claims, a read lock on the same bytes in
  the file's upper half.

A run may commit alone only after it took its flag and then saw no other presence that
overlaps its own. A run that arrives and finds one waits, after its plan and before
removing any leftover or making any item, until no overlapping flag is left. The run
alone notices the newcomer within `CHECK_SECONDS` (its engine asks before each batch),
stops sending batches alone, and drops its flag once none it sent alone is still running
(`drained`). From then on both claim every item, as before: an item is made twice only
by batches already under way, and no attempt ever removes another live attempt's files.

The locks are open-file-description locks (`F_OFD_SETLK`): they belong to the open file,
not to the process, and go with it when the run ends or is killed, so a dead run never
blocks anyone. Where the filesystem has none (or the platform), every run claims every
item, as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable, Sequence

from dispatcher.outputs.claims import same_file

LEASE_NAME = ".dispatch-lease"
CHECK_SECONDS = 0.1
"""How often a run alone looks for a newcomer (one lock query per root)."""
WAIT_SECONDS = 0.05
"""How often a newcomer looks whether the run alone has switched to per-item claims."""
WAIT_LIMIT_SECONDS = 30.0
"""How long a newcomer waits for that at most (a run alone on long items, sent in big
chunks, may take a while). Then it claims every item without waiting longer and removes no
leftover: the batches still under way may make an item twice (waste, never corruption)."""
_REGION_BITS = 20
"""Shard indices per region: a run of more shards locks its whole region (and is alone
only with no other run of the same sharding present)."""
_REGIONS = 1 << 42
_FLAGS = 1 << 62
"""Where the flags start: presence bytes lie below, flag bytes at the same offset above."""
_OFD = (getattr(fcntl, "F_OFD_GETLK", None), getattr(fcntl, "F_OFD_SETLK", None))
_FLOCK = "hhqqi4x"
"""struct flock on Linux: type, whence, start, length, pid (0 for OFD locks), padding."""

_alone_roots: tuple[str, ...] = ()
"""Output roots this process commits to alone for the batch in hand (`work_alone`)."""


def work_alone(roots: Sequence[str]) -> None:
    """Commit under these roots without per-item claims until told otherwise (per batch)."""
    global _alone_roots
    _alone_roots = tuple(roots)


def alone_in(root: str) -> bool:
    """Whether this process commits to `root` alone (an item source asks, per item)."""
    return root in _alone_roots


def alone_under(path: str) -> bool:
    """Whether `path` lies under a root this process commits to alone (`atomic_write`)."""
    if not _alone_roots:
        return False
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    return any(path.startswith(root + os.sep) for root in _alone_roots)


def shard_slot(signature: str, indices: Sequence[int], count: int) -> tuple[int, list[int]]:
    """(start of the region, the run's offsets in it) for a way of sharding and its indices
    (`sharding.overlap_class`)."""
    import xxhash  # only for a run with items to make

    digest = xxhash.xxh64_intdigest(signature.encode("utf-8", "surrogateescape"))
    base = (digest % _REGIONS) << _REGION_BITS
    if count > 1 << _REGION_BITS:
        return base, []  # the whole region
    return base, sorted(set(indices))


class RunLease:
    """The run's lease at its output roots (see the module); the engine asks `alone()`
    before each batch and calls `drained()` when no batch it sent alone is running."""

    def __init__(self, roots: Sequence[str], slot: tuple[int, list[int]]) -> None:
        self.roots = tuple(roots)
        self._files = [_LeaseFile(root, slot) for root in roots]
        self._alone: bool | None = None
        """Unknown until an engine first asks; then True while alone, False for good."""
        self._checked = 0.0
        self.unsettled = False
        """Another run was still committing alone when this one stopped waiting (a signal,
        or `WAIT_LIMIT_SECONDS`): its live staging files may lie among the leftovers."""

    @classmethod
    def take(
        cls,
        roots: Sequence[str],
        slot: tuple[int, list[int]],
        note: Callable[[str], None],
        stopping: Callable[[], bool],
    ) -> RunLease | None:
        """Presence at every root, once no overlapping run commits alone there; None where
        a root's filesystem has no such locks (then every item is claimed)."""
        lease = cls(roots, slot)
        try:
            for file in lease._files:
                file.open()
        except OSError:
            # No such locks there, or a root that cannot be written (its items will say
            # so): nothing to gain from a lease.
            lease.release()
            return None
        lease.unsettled = not lease._wait_for_alone_runs(note, stopping)
        return lease

    def _wait_for_alone_runs(
        self, note: Callable[[str], None], stopping: Callable[[], bool]
    ) -> bool:
        """Whether every overlapping run alone here has switched to per-item claims."""
        started, told = time.monotonic(), False
        for file in self._files:
            while file.others(flags=True):
                waited = time.monotonic() - started
                if stopping():
                    return False
                if waited > WAIT_LIMIT_SECONDS:
                    note(
                        f"the run alone on {file.root} is still at its batches after "
                        f"{waited:.0f} s: claiming every item without waiting longer "
                        "(an item may be made twice; leftovers are left to the next run)"
                    )
                    return False
                if not told and waited > 1.0:
                    note(f"waiting for the run alone on {file.root} to claim its items one by one")
                    told = True
                time.sleep(WAIT_SECONDS)
        return True

    def alone(self) -> bool:
        """Whether a batch sent now may commit without per-item claims."""
        if self._alone is False:
            return False
        now = time.monotonic()
        if self._alone is None:
            self._alone = self._become_alone()
            self._checked = now
        elif now - self._checked >= CHECK_SECONDS:
            self._checked = now
            if self._others_present():
                self._alone = False  # the flag stays until `drained`
        return self._alone

    def _become_alone(self) -> bool:
        if self._others_present():
            return False
        try:
            for file in self._files:
                file.lock_flag()
        except OSError:
            self.drained()
            return False
        # Taken, then looked again: a newcomer that came meanwhile saw no flag and claims,
        # so this run claims too.
        if self._others_present():
            self.drained()
            return False
        return True

    def _others_present(self) -> bool:
        return any(file.others(flags=False) for file in self._files)

    @property
    def switching(self) -> bool:
        """No longer alone, with the flag still held: `drained()` once no batch sent alone runs."""
        return self._alone is False and any(file.flagged for file in self._files)

    def drained(self) -> None:
        """No batch sent alone is still running: newcomers may start."""
        for file in self._files:
            file.unlock_flag()

    def release(self) -> None:
        """Let go of every root (and remove its lease file when no other run holds it)."""
        for file in self._files:
            file.close()


class _LeaseFile:
    """One root's lease file, held through one open file description."""

    def __init__(self, root: str, slot: tuple[int, list[int]]) -> None:
        self.root = root
        self.path = os.path.join(root, LEASE_NAME)
        base, offsets = slot
        region = 1 << _REGION_BITS
        # Mine: my bytes (or the whole region). Others overlapping me: anything outside my
        # region, or on my bytes.
        self.mine = [(base + o, 1) for o in offsets] or [(base, region)]
        self.overlapping = [(0, base), *self.mine, (base + region, _FLAGS - base - region)]
        self.overlapping = [(s, n) for s, n in self.overlapping if n > 0]
        self.fd: int | None = None
        self.flagged = False

    def open(self) -> None:
        if _OFD[0] is None:
            raise OSError(errno.ENOSYS, "no open file description locks here")
        os.makedirs(self.root, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                self._lock(fd, self.mine, fcntl.F_RDLCK, wait=True)
                if same_file(fd, self.path):
                    self.fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed by a run that ended as this one opened it: open the new one

    def others(self, flags: bool) -> bool:
        """Whether another run's presence (or flag) overlaps this run's items; yes when
        the lock server cannot say (a network filesystem's hiccup): then everyone claims."""
        shift = _FLAGS if flags else 0
        try:
            return any(
                _conflict(self.fd, start + shift, length) for start, length in self.overlapping
            )
        except OSError:
            return True

    def lock_flag(self) -> None:
        self._lock(self.fd, [(s + _FLAGS, n) for s, n in self.mine], fcntl.F_RDLCK)
        self.flagged = True

    def unlock_flag(self) -> None:
        if self.flagged and self.fd is not None:
            with contextlib.suppress(OSError):  # then it goes when the run's file is closed
                self._lock(self.fd, [(s + _FLAGS, n) for s, n in self.mine], fcntl.F_UNLCK)
        self.flagged = False

    def close(self) -> None:
        fd, self.fd = self.fd, None
        self.flagged = False
        if fd is None:
            return
        try:
            # The last run out removes the file: a write lock on all of it is granted only
            # when no other run holds any byte; a run that opened it meanwhile sees it gone
            # (`same_file`) and opens a new one.
            with contextlib.suppress(OSError):
                self._lock(fd, [(0, 0)], fcntl.F_WRLCK)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(fd)

    @staticmethod
    def _lock(fd: int, ranges: list[tuple[int, int]], kind: int, wait: bool = False) -> None:
        for start, length in ranges:
            data = struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0)
            while True:
                try:
                    fcntl.fcntl(fd, _OFD[1], data)
                    break
                except OSError as exc:
                    # Only the last run out's removal holds a write lock, for an instant.
                    if not wait or exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    time.sleep(0.01)


def _conflict(fd: int | None, start: int, length: int) -> bool:
    data = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
    kind = struct.unpack(_FLOCK, fcntl.fcntl(fd, _OFD[0], data))[0]
    return kind != fcntl.F_UNLCK
