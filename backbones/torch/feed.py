"""What a device process of a multi-device torch run loads: the items its parent sends
while it runs, taken by its DataLoader a batch at a time as they come.

A receiver thread reads the parent's pipe into a local buffer, so the parent's sends
never wait on this process's compute. The loader's batch sampler takes from that buffer;
when it finds the buffer empty it asks the parent once (`hungry`) and the parent answers
with items or `drain` (nothing left for now), which ends the loader's pass. Waiting
instead would hold back the batch already loaded behind the sampler's call, and with it
the items the parent is waiting for. Everything here imports torch.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import Dataset

from backbones.torch.data import (
    Fetcher,
    ItemDataset,
    LoaderSettings,
    Pack,
    PackStream,
    Stopped,
    load_sample,
    make_loader,
    start,
)
from dispatcher.engines import error_line

Entry = tuple[int, tuple[str, Any]]
"""An item as a device process holds it: (its position in the parent's plan, the item)."""

DRAIN = "drain"
WAIT_SECONDS = 0.05
"""Longest a waiting sampler sleeps: bounds how late a stop is noticed."""


class Feed:
    """Items sent by the parent, in the order they came; thread-safe.

    `send` says something to the parent; `taken(entries)` is told of the items each batch
    takes (the parent learns how many were taken through `count_taken`).
    """

    def __init__(
        self,
        conn: Any,
        send: Callable[[tuple[Any, ...]], None],
        count_taken: Callable[[int], None],
    ) -> None:
        self.conn = conn
        self.send = send
        self.count_taken = count_taken
        self.taken: Callable[[list[Entry]], None] = lambda entries: None
        self.entries: collections.deque[Entry | str] = collections.deque()
        self.cond = threading.Condition()
        self.finished = False
        """The parent said there is no more work (or its pipe closed)."""
        self.asked = False
        self.thread = threading.Thread(target=self._receive, name="dispatch-feed", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _receive(self) -> None:
        while True:
            try:
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                message = None
            if message is not None and message[0] == "chunk":
                entries = self._unpack(message[1], message[2])
                message = ("entries", entries) if entries else ("nothing",)
            with self.cond:
                if message is None:
                    self.finished = True
                elif message[0] == "entries":
                    self.entries.extend(message[1])
                elif message[0] == DRAIN:
                    self.entries.append(DRAIN)
                self.cond.notify_all()
            if message is None:
                return

    def _unpack(self, seqs: list[int], data: bytes) -> list[Entry]:
        """A chunk's items; ones that cannot be unpickled here fail (told to the parent)."""
        try:
            return list(zip(seqs, pickle.loads(data), strict=True))
        except Exception as exc:
            error = f"item could not be unpickled in the device process: {error_line(exc)}"
            self.send(("unreadable", seqs, error, traceback.format_exc()))
            return []

    def take(self, size: int, should_stop: Callable[[], bool]) -> list[Entry] | None:
        """Up to `size` items for the next batch; None ends the loader's pass."""
        with self.cond:
            while not self.entries:
                if self.finished or should_stop():
                    return None
                if not self.asked:
                    self.asked = True
                    self.send(("hungry",))
                self.cond.wait(WAIT_SECONDS)
            self.asked = False
            if self.entries[0] == DRAIN:
                self.entries.popleft()
                return None
            batch: list[Entry] = []
            while self.entries and len(batch) < size and self.entries[0] != DRAIN:
                batch.append(self.entries.popleft())  # type: ignore[arg-type]
            self.taken(batch)
            self.count_taken(len(batch))
            return batch

    def wait_for_work(self, should_stop: Callable[[], bool]) -> bool:
        """Between passes: True once items are waiting, False when there will be none."""
        with self.cond:
            while True:
                while self.entries and self.entries[0] == DRAIN:
                    self.entries.popleft()
                if self.entries:
                    return True
                if self.finished or should_stop():
                    return False
                self.cond.wait(WAIT_SECONDS * 2)


class FedSampler:
    """The loader's batch sampler: batches of fed items, remembered until they come back."""

    def __init__(self, feed: Feed, size: int, should_stop: Callable[[], bool]) -> None:
        self.feed = feed
        self.size = size
        self.should_stop = should_stop
        self.in_flight: collections.deque[list[Entry]] = collections.deque()
        """Batches handed to the loader and not yet taken off it, oldest first."""

    def __iter__(self) -> Iterator[list[Entry]]:
        while True:
            batch = self.feed.take(self.size, self.should_stop)
            if not batch:
                return
            self.in_flight.append(batch)
            yield batch


class FedDataset(Dataset):
    """Rows of fed items: the sampler's indices are the entries themselves."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage

    def __getitem__(self, entry: Entry) -> tuple[Any, ...]:  # type: ignore[override]
        seq, (key, payload) = entry
        return load_sample(self.stage, seq, key, payload)


class LoaderWorkerInit:
    """A device process's loader workers close its pipe to the parent and die with it.

    A worker outliving a killed device process (torch's own check takes 5 s) would keep
    that pipe open: the parent would see no end of it, and its sends could block.
    """

    def __init__(self, inner: Callable[[int], None] | None, fd: int) -> None:
        self.inner = inner
        self.fd = fd
        self.parent = os.getpid()

    def __call__(self, worker_id: int) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if sys.platform.startswith("linux"):
            with contextlib.suppress(Exception):
                import ctypes

                ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != self.parent:
            os._exit(1)  # the device process died before the line above
        if self.inner is not None:
            self.inner(worker_id)


class FedPackStream(PackStream):
    """Packs of fed items (positions are plan positions) until the parent drains the feed.

    A worker that dies takes the batches in flight with it: they are loaded again through
    `PackStream`'s own isolation (only the item that kills a worker fails), then a new
    loader goes on with the feed.
    """

    def __init__(
        self,
        feed: Feed,
        stage: Any,
        settings: LoaderSettings,
        should_stop: Callable[[], bool],
        note: Callable[[str], None],
    ) -> None:
        super().__init__(lambda positions: None, 0, settings, should_stop, note, stage.collate)
        self.feed = feed
        self.stage = stage
        self.sampler: FedSampler | None = None

    def prime(self) -> None:
        if self.iterator is None:
            self._open_fed()

    def _open_fed(self) -> None:
        settings = self.settings
        self.sampler = FedSampler(self.feed, settings.batch_size, self.should_stop)
        loader = make_loader(FedDataset(self.stage), settings, self.collate, self.sampler)
        if settings.num_workers > 0:
            loader.worker_init_fn = LoaderWorkerInit(loader.worker_init_fn, self.feed.conn.fileno())
        self.iterator = start(loader)
        if settings.num_workers > 0:
            self.fetcher = Fetcher(self.iterator, settings.prefetch_factor)

    def __iter__(self) -> Iterator[Pack]:
        while not self.should_stop():
            if self.iterator is None:
                self._open_fed()
            assert self.sampler is not None
            try:
                packed = self._next()
            except StopIteration:
                self.close(hurry=False)
                return
            except Stopped:
                return
            except Exception as exc:
                lost = [entry for batch in self.sampler.in_flight for entry in batch]
                self.close(hurry=True)
                if self.should_stop():
                    return
                self.note(f"data loading broke ({error_line(exc)}); restarting the loader")
                yield from self._reload(lost)
                continue
            if self.sampler.in_flight:
                self.sampler.in_flight.popleft()
            yield Pack(packed["positions"], packed["batch"], packed["failed"])

    def _reload(self, entries: list[Entry]) -> Iterator[Pack]:
        """The items that were loading when a worker died, through a loader of their own."""
        seqs = [seq for seq, _ in entries]
        items = [item for _, item in entries]
        stage = self.stage
        inner = PackStream(
            lambda positions: ItemDataset(stage, items, positions),
            len(items),
            self.settings,
            self.should_stop,
            self.note,
            stage.collate,
        )
        try:
            for pack in inner:
                failed = [(seqs[p], *rest) for p, *rest in pack.failed]
                yield Pack([seqs[p] for p in pack.positions], pack.batch, failed)
        finally:
            inner.close(hurry=True)
