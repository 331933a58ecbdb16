"""The data side of the torch backbone: datasets over pending items, collation, DataLoaders.

Only pending items reach a dataset (the plan dropped done ones). Each row is loaded in a
DataLoader worker; a row that fails to load is carried through collation as a failure, so
one bad file fails one item, not the batch or the run. A worker that dies (a segfault in a
decoder, the OOM killer) fails only the item it was loading: its batch is reloaded item by
item in fresh workers; the loader restarts after it and the run goes on.
Everything here imports torch, so it is imported only by the torch backbone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader, Dataset

from dispatcher.engines import (
    ControlFlow,
    blocked_stop_signals,
    error_line,
    load_row,
    malformed_message,
    unblock_stop_signals,
)

LoadFailure = tuple[int, str, str, str | None]
"""(position, error line, traceback, what is malformed or None) of a row that failed to load:
malformed input is told by type in the worker that loaded it (`malformed_message`)."""


@dataclass
class Pack:
    """One batch as the backbone sees it: which positions it holds and what failed to load."""

    positions: list[int]
    batch: dict[str, Any] | None
    failed: list[LoadFailure] = field(default_factory=list)
    """Rows that failed to load."""


@dataclass
class LoaderSettings:
    batch_size: int
    num_workers: int
    prefetch_factor: int
    pin_memory: bool
    pin_memory_device: str = ""


# --- rows and collation --------------------------------------------------------------


def load_failure(position: int, exc: BaseException) -> tuple[Any, ...]:
    """A dataset sample standing for a row that failed to load (call inside the `except`)."""
    return ("failed", position, error_line(exc), traceback.format_exc(), malformed_message(exc))


def load_sample(stage: Any, position: int, key: str, payload: Any) -> tuple[Any, ...]:
    """An item loaded where data loads, as a dataset sample: `("ok", position, row)`, or its
    failure as data (a task's sys.exit() too), so one bad row never ends a loader worker."""
    try:
        row = load_row(stage, key, payload)
    except ControlFlow:
        raise
    except BaseException as exc:
        return load_failure(position, exc)
    return ("ok", position, row)


class ItemDataset(Dataset):
    """Pending plan items; a row is what the stage's `load` makes of an item."""

    def __init__(self, stage: Any, items: Sequence[tuple[str, Any]], positions: list[int]) -> None:
        self.stage = stage
        self.items = items
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> tuple[Any, ...]:
        position = self.positions[j]
        key, payload = self.items[position]
        return load_sample(self.stage, position, key, payload)


class ItemCollate:
    """The DataLoader's collate_fn: one batch of `ItemDataset` samples, by the stage's
    `collate`, keeping load failures apart."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, samples: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
        return collate_items(samples, self.collate)


def collate_items(
    samples: Sequence[tuple[Any, ...]], collate: Callable[[list[Any]], Any]
) -> dict[str, Any]:
    """Collate one batch of `ItemDataset` samples, keeping load failures apart."""
    positions: list[int] = []
    rows: list[Any] = []
    failed: list[LoadFailure] = []
    for sample in samples:
        if sample[0] == "ok":
            positions.append(sample[1])
            rows.append(sample[2])
        else:
            failed.append(sample[1:])
    batch = None
    if rows:
        try:
            batch = collate(rows)
        except Exception as exc:
            failed += [
                (p, f"collate: {error_line(exc)}", traceback.format_exc(), None) for p in positions
            ]
            positions, batch = [], None
    # A plain dict (not a dataclass) so the loader's pin-memory pass reaches the tensors.
    return {"positions": positions, "batch": batch, "failed": failed}


# --- loaders -----------------------------------------------------------------------------


def quiet_worker(worker_init: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A worker_init_fn for the signals a worker inherits from the parent.

    Ctrl-C reaches the whole process group: workers ignore SIGINT and the parent stops the
    loader itself. SIGTERM gets its default action back (the parent's handler was copied by
    fork), so terminating a worker, as multiprocessing does at exit, always works.
    """
    return _QuietWorker(worker_init)


class _QuietWorker:
    def __init__(self, inner: Callable[[int], None] | None) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        unblock_stop_signals()  # held pending since the fork
        if self.inner is not None:
            self.inner(worker_id)


def make_loader(
    dataset: Any,
    settings: LoaderSettings,
    collate: Callable[..., Any],
    batch_sampler: Any = None,
) -> DataLoader:
    """A DataLoader over `dataset` in order; `batch_sampler` (which then makes the batches)
    for a stream fed while it runs."""
    extra: dict[str, Any] = {}
    if settings.num_workers > 0:
        extra["prefetch_factor"] = settings.prefetch_factor
        extra["worker_init_fn"] = quiet_worker()
    if settings.pin_memory and settings.pin_memory_device:
        extra["pin_memory_device"] = settings.pin_memory_device
    if batch_sampler is not None:
        extra["batch_sampler"] = batch_sampler
    else:
        extra.update(batch_size=settings.batch_size, shuffle=False)
    return DataLoader(
        dataset,
        num_workers=settings.num_workers,
        collate_fn=collate,
        pin_memory=settings.pin_memory,
        **extra,
    )


def _watch(iterator: Any, on: bool) -> None:
    """Register (or not) the iterator's workers with torch's SIGCHLD hook."""
    workers = getattr(iterator, "_workers", None)
    if not workers or getattr(iterator, "_worker_pids_set", False) == on:
        return
    with contextlib.suppress(Exception):
        from torch.utils.data._utils import signal_handling

        if on:
            signal_handling._set_worker_pids(id(iterator), tuple(w.pid for w in workers))
        else:
            signal_handling._remove_worker_pids(id(iterator))
        iterator._worker_pids_set = on


def start(loader: Any) -> Iterator[Any]:
    """`iter(loader)`, its workers started with SIGINT/SIGTERM held until they ignore them.

    torch's hook that raises when a worker dies is armed only inside `fetch`, so a dead
    worker surfaces from `next()` (where the backbone knows which batch it was loading),
    never in the middle of a compute or a write.
    """
    with warnings.catch_warnings(), blocked_stop_signals():
        warnings.filterwarnings("ignore", message=".*pin_memory_device is deprecated.*")
        warnings.filterwarnings("ignore", message=".*no accelerator is found.*")
        iterator = iter(loader)
    _watch(iterator, False)
    return iterator


def _raise_if_worker_died(iterator: Iterator[Any]) -> None:
    """RuntimeError naming the loader's dead workers, if any died (not at its shutdown)."""
    workers = getattr(iterator, "_workers", None) or []
    dead = [w.pid for w in workers if not w.is_alive()]
    if dead and not getattr(iterator, "_shutdown", False):
        raise RuntimeError(
            f"DataLoader worker (pid {', '.join(map(str, dead))}) exited unexpectedly"
        )


def fetch(iterator: Iterator[Any]) -> Any:
    """`next(iterator)`; raises RuntimeError at once if one of its workers has died."""
    _raise_if_worker_died(iterator)
    _watch(iterator, True)
    try:
        return next(iterator)
    finally:
        _watch(iterator, False)


def _kill_workers(iterator: Iterator[Any]) -> None:
    _watch(iterator, False)
    for worker in getattr(iterator, "_workers", None) or []:
        with contextlib.suppress(Exception):
            if worker.is_alive():
                worker.kill()


def close(iterator: Iterator[Any] | None, hurry: bool) -> None:
    """Shut a loader iterator's workers down; `hurry` kills them instead of letting them finish."""
    if iterator is None:
        return
    if hurry:
        _kill_workers(iterator)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()


class Stopped(Exception):
    """The run was asked to stop while waiting for a batch."""


class _Wake:
    """Put into a loader's result queue: a thread blocked in `next()` on it raises Stopped.

    torch unpacks each result as `(index, data)`; this object refuses to be unpacked.
    """

    def __iter__(self) -> Iterator[Any]:
        raise Stopped()


def _wake(iterator: Iterator[Any]) -> None:
    """Get a thread out of `next(iterator)` now, instead of at torch's next 5-second check."""
    data_queue = getattr(iterator, "_data_queue", None)
    with contextlib.suppress(Exception):
        if isinstance(data_queue, queue.Queue):  # behind torch's pin-memory thread
            data_queue.put_nowait(_Wake())
        elif data_queue is not None:  # the workers' multiprocessing queue (workers are dead)
            from multiprocessing.reduction import ForkingPickler

            data_queue._writer.send_bytes(ForkingPickler.dumps(_Wake()))


class Fetcher:
    """Takes batches off a multi-worker loader in a thread, a few ahead of the consumer.

    Receiving a batch from a worker (unpickling, mapping its shared tensors) then overlaps
    the main thread's compute, as torch's pin-memory thread does on accelerators. The main
    thread waits in short slices and checks the workers itself, so a dead worker is
    noticed at once and the thread, with its loader, is simply left behind.
    """

    POLL_SECONDS = 0.05

    def __init__(self, iterator: Iterator[Any], depth: int) -> None:
        self.iterator = iterator
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(max(1, depth))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dispatch-fetch", daemon=True)
        self.thread.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self.done.is_set():
            try:
                self.queue.put(entry, timeout=self.POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                if not self._put(("batch", next(self.iterator))):
                    return
        except StopIteration:
            self._put(("end", None))
        except Exception as exc:
            self._put(("error", exc))
        except BaseException as exc:  # never die silently: the consumer would wait for ever
            self._put(("error", RuntimeError(f"the fetch thread stopped: {error_line(exc)}")))

    def next(self, should_stop: Callable[[], bool]) -> Any:
        """The next batch; StopIteration at the end; Stopped on a stop; RuntimeError if a worker died."""
        while True:
            alive = self.thread.is_alive()  # before the get: what it put before exiting is seen
            try:
                kind, value = self.queue.get(timeout=self.POLL_SECONDS)
            except queue.Empty:
                if not alive:
                    raise RuntimeError("the fetch thread exited without a batch") from None
            else:
                if kind == "batch":
                    return value
                if kind == "end":
                    raise StopIteration
                raise value
            _raise_if_worker_died(self.iterator)
            if should_stop():
                raise Stopped()

    JOIN_SECONDS = 5.0

    def close(self, hurry: bool) -> None:
        """Stop the thread, then the workers: never shut a loader down under a thread using it.

        A daemon thread still inside torch when the interpreter exits is ended in the middle
        of C++ code, which aborts the process (`terminate called without an active
        exception`, exit 134 instead of 143).
        """
        if hurry:
            _kill_workers(self.iterator)
            _wake(self.iterator)
        else:
            self.thread.join(timeout=self.JOIN_SECONDS)  # it has seen the end, or is about to
        self.done.set()
        self.thread.join(timeout=self.JOIN_SECONDS)
        close(self.iterator, hurry)


class PackStream:
    """Batches of pending positions, restarting the loader after a worker dies.

    When a worker dies, the next expected batch is retried alone; if it takes a worker
    down again, its items are loaded one by one, each in a fresh worker, and only the one
    that kills its worker fails; otherwise the batch that was loading beside it is retried
    the same way. Either way the run continues after it.
    """

    def __init__(
        self,
        make_dataset: Callable[[list[int]], Any],
        count: int,
        settings: LoaderSettings,
        should_stop: Callable[[], bool],
        note: Callable[[str], None] = lambda text: None,
        collate: Callable[[list[Any]], Any] = list,
    ) -> None:
        self.note = note
        self.collate = ItemCollate(collate)
        self.make_dataset = make_dataset
        self.count = count
        self.settings = settings
        self.should_stop = should_stop
        self.iterator: Iterator[Any] | None = None
        self.fetcher: Fetcher | None = None

    def prime(self) -> None:
        """Start the workers now, so loading overlaps whatever the caller does next."""
        if self.iterator is None and self.count:
            self._open(0, self.count)

    def _open(self, begin: int, end: int, settings: LoaderSettings | None = None) -> None:
        settings = settings or self.settings
        loader = make_loader(self.make_dataset(list(range(begin, end))), settings, self.collate)
        self.iterator = start(loader)
        if settings.num_workers > 0:
            self.fetcher = Fetcher(self.iterator, settings.prefetch_factor)

    def _next(self) -> Any:
        if self.fetcher is not None:
            return self.fetcher.next(self.should_stop)
        return next(self.iterator)  # type: ignore[arg-type]  (in-process loading)

    def __iter__(self) -> Iterator[Pack]:
        pos, probing = 0, False
        size = self.settings.batch_size
        while pos < self.count and not self.should_stop():
            if self.iterator is None:
                self._open(pos, min(pos + size, self.count) if probing else self.count)
            try:
                packed = self._next()
            except StopIteration:
                self.close(hurry=False)
                if not probing:
                    break
                probing = False
                continue
            except Stopped:
                return
            except Exception as exc:
                self.close(hurry=True)
                if self.should_stop():
                    return  # workers stopped by the same signal as this process
                self.note(f"data loading broke ({error_line(exc)}); restarting the loader")
                if probing:
                    end = min(pos + size, self.count)
                    yield from self._one_by_one(pos, end)
                    pos, probing = end, False
                else:
                    probing = True
                continue
            n = len(packed["positions"]) + len(packed["failed"])
            pos += n
            yield Pack(packed["positions"], packed["batch"], packed["failed"])
            if probing:
                self.close(hurry=False)
                probing = False

    def _one_by_one(self, begin: int, end: int) -> Iterator[Pack]:
        """Positions `begin`..`end` each in a fresh single-worker loader of its own.

        The batch took its worker down twice: only the item that kills a worker again fails,
        its batch-mates load and run (so a rerun does not fail them once more).
        """
        alone = dataclasses.replace(self.settings, batch_size=1, num_workers=1, prefetch_factor=1)
        for position in range(begin, end):
            if self.should_stop():
                return
            self._open(position, position + 1, alone)
            try:
                packed = self._next()
            except Stopped:
                return
            except Exception as exc:
                self.close(hurry=True)
                if self.should_stop():
                    return
                tb = "".join(traceback.format_exception(exc))
                yield Pack([], None, [(position, f"loader: {error_line(exc)}", tb, None)])
                continue
            self.close(hurry=False)
            yield Pack(packed["positions"], packed["batch"], packed["failed"])

    def close(self, hurry: bool) -> None:
        if self.fetcher is not None:
            self.fetcher.close(hurry)
        else:
            close(self.iterator, hurry)
        self.iterator, self.fetcher = None, None
