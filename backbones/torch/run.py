"""One torch run on one device: a DataLoader feeding batches to the device, a
postprocessing thread writing them.

`TorchRun` is the single-device engine of the torch backbone (`backbones/torch/backbone.py`) and
the inside of each device process of a multi-device run (`torch_device_process.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backbones.base import run_in_process
from backbones.torch import device as torch_device
from dispatcher.engines import (
    ControlFlow,
    GraceExpired,
    Item,
    ItemLedger,
    Ledger,
    OpenItems,
    Outcome,
    RowBatcher,
    RowLedger,
    RowsJob,
    Stage,
    after_load,
    compute,
    error_line,
    failed,
    write,
)

if TYPE_CHECKING:
    from backbones.torch.data import Pack


# --- postprocessing thread -------------------------------------------------------------------


@dataclass
class Job:
    """A computed batch waiting for postprocessing."""

    refs: list[int]
    batch: dict[str, Any]
    result: Any
    event: Any


class PostWorker:
    """One thread postprocessing computed batches in order, behind a bounded queue.

    The thread starts with the first batch, after the DataLoader's workers were forked.
    """

    def __init__(self, handle: Callable[[Job], None], maxsize: int) -> None:
        self.handle = handle
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize)
        self.abandoned = threading.Event()
        self.thread: threading.Thread | None = None

    def _loop(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if not self.abandoned.is_set():
                self.handle(job)

    def submit(self, job: Job) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._loop, name="dispatch-postprocess", daemon=True
            )
            self.thread.start()
        while True:
            try:
                self.queue.put(job, timeout=0.1)
                return
            except queue.Full:
                self._check_alive()

    def _check_alive(self) -> None:
        """A full queue with nobody taking from it would wait forever: fail loudly instead."""
        assert self.thread is not None
        if not self.thread.is_alive():
            raise RuntimeError("the postprocessing thread exited with batches queued")

    def finish(self, deadline: Callable[[], float | None]) -> bool:
        """Let queued batches finish; stop waiting at the deadline (None: wait). True if drained."""
        if self.thread is None:
            return True
        while True:
            limit = deadline()
            try:
                self.queue.put(None, timeout=0.1 if limit is None else max(0.0, min(0.1, limit)))
                break
            except queue.Full:
                if limit is not None and limit <= 0:
                    self.abandoned.set()
                    return False
                self._check_alive()
        while self.thread.is_alive():
            limit = deadline()
            if limit is not None and limit <= 0:
                self.abandoned.set()
                return False
            self.thread.join(0.1 if limit is None else min(0.1, limit))
        return True

    def abandon(self) -> None:
        self.abandoned.set()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def join(self, timeout: float) -> None:
        """Wait (a bounded time) for the thread to leave the task's code and torch.

        A daemon thread still in a torch call when the interpreter exits is ended inside
        C++, which aborts the process instead of letting it exit 143 after a SIGTERM.
        After `abandon`, the batch in hand stops at its next row (the ledger is closed).
        """
        if self.thread is not None:
            self.thread.join(timeout)


# --- one run -----------------------------------------------------------------------------------


def _same(ref: int) -> int:
    return ref


class TorchRun:
    """The state of one run of the torch backbone on one device: loader, ledger,
    postprocessing.

    The stage's steps, placed: `load` in DataLoader workers, `compute` on the device in
    this thread, `write` on the postprocessing thread (or here, for a stage whose write
    computes too). A device process of a multi-device run is one of these, fed by its
    parent (`backbones/torch/device_process.py`).
    """

    THREAD_EXIT_SECONDS = 5.0  # for the postprocessing thread to finish the row in hand

    def __init__(
        self,
        options: argparse.Namespace,
        choice: torch_device.DeviceChoice,
        stage: Stage,
        items: list[Item],
        reporter: Any,
        stop: Any,
    ) -> None:
        from backbones.torch import data as torch_data
        from dispatcher.engines import batches

        self.data = torch_data
        self.batches = batches
        self.stage = stage
        self.items = items
        self.stop = stop
        self.reporter = reporter
        self.options = options
        self.choice = choice
        self.device: Any = None
        self.refs: list[int] | None = None
        self.ledger: Any = self._ledger()
        pin_device = "npu" if self.choice.type == "npu" else ""
        self.settings = torch_data.LoaderSettings(
            batch_size=self.options.batch_size,
            num_workers=self.options.num_workers,
            prefetch_factor=self.options.prefetch_factor,
            pin_memory=bool(self.options.pin_memory),
            pin_memory_device=pin_device,
        )

    def _ledger(self) -> Ledger:
        if self.stage.source.whole_run:
            return RowLedger(self.items[0], self.reporter)
        return ItemLedger(self.items, self.reporter, getattr(self.options, "retries", 0) or 0)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        # After a signal: no new batches; computed ones are written within the grace
        # period; then GraceExpired ends whatever is still running in this thread.
        self.device = torch_device.activate(self.choice)
        completed = run_in_process(
            self.stage, self.reporter, self.stop, self._run_batches, self.device
        )
        if completed is not None:
            self.ledger.finish(completed)

    def _run_batches(self) -> bool:
        """Every pending item, then passes over the failed ones with retries left; True
        when the run went to the end."""
        refs = list(range(len(self.items)))
        completed = True
        try:
            while refs and completed:
                completed = self._pass(refs)
                refs = self.ledger.take_again()
        finally:
            self.ledger.close()
        return completed

    def _pass(self, refs: list[int]) -> bool:
        """Load, compute and write the items `refs`; True when the pass went to the end."""
        completed = False
        post = PostWorker(self._postprocess, self.options.postprocess_queue)
        if self.stage.expands_items:  # items of rows: rows batched across items
            self.batcher = RowBatcher(self.options.batch_size)
            self.open_items = OpenItems(self.stage, self.ledger.key, self.ledger.record)
        stream: Any = None
        try:
            stream = self._stream(refs)
            completed = self._loop(stream, post)
            drained = post.finish(self._grace_left)
            completed = completed and drained and not self.stop.is_set()
        except GraceExpired:
            completed = False
        finally:
            post.abandon()
            if not completed:
                self.ledger.close()
            self._close_stream(stream, hurry=not completed)
            post.join(self.THREAD_EXIT_SECONDS)
            if self.stage.expands_items:
                self.open_items.abandon()
        return completed

    def _grace_left(self) -> float | None:
        """Seconds left of the grace period once a stop was asked for; None before."""
        deadline = self.stop.deadline()
        return None if deadline is None else deadline - time.monotonic()

    def _stream(self, refs: list[int]) -> Iterable[Pack]:
        if self.stage.source.whole_run:
            self.refs = None  # the packs' positions are the rows' refs already
            return self._whole_batches()
        stage = self.stage
        # A pack's positions are indices into `items`: the pass's refs, by position.
        items = self.items if len(refs) == len(self.items) else [self.items[r] for r in refs]
        self.refs = refs

        def make(positions: list[int]) -> Any:
            return self.data.ItemDataset(stage, items, positions)

        return self.data.PackStream(
            make,
            len(items),
            self.settings,
            self.stop.is_set,
            self.reporter.note,
            collate=stage.collate,
        )

    def _close_stream(self, stream: Any, hurry: bool) -> None:
        if isinstance(stream, self.data.PackStream):
            stream.close(hurry)
        elif stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # the whole-run generator closes its loader in its finally

    def _loop(self, stream: Iterable[Pack], post: PostWorker) -> bool:
        """Compute every batch; False when the run ended early (a stop)."""
        if isinstance(stream, self.data.PackStream) and not self.stage.source.checks_after_load:
            stream.prime()  # workers start loading while the model loads
            self.stage.warm_up()
        expands = self.stage.expands_items
        for refs, batch in self._loaded(stream):
            if expands:
                for entries, rows in self.batcher.add(refs, batch):
                    self._compute_rows(entries, rows, post)
            else:
                self._compute(refs, batch, post)
            if self.stop.is_set():
                return False
        if expands and not self.stop.is_set():
            self._compute_rows(*self.batcher.take(), post)
        return not self.stop.is_set()

    def _loaded(self, stream: Iterable[Pack]) -> Iterator[tuple[list[int], Any]]:
        """(refs, batch) of rows left to compute, after recording load failures and the
        rows the plan's after-load check found done."""
        for pack in stream:
            if self.stop.is_set():
                return
            ref_of = self.refs.__getitem__ if self.refs is not None else _same
            for position, error, tb, malformed in pack.failed:
                ref = ref_of(position)
                outcome = Outcome(self.ledger.key(ref), False, error, tb, malformed=malformed)
                self.ledger.record(ref, outcome)
            refs, batch = list(map(ref_of, pack.positions)), pack.batch
            if batch is None or not refs:
                continue
            keep, batch, settled = after_load(self.stage, self._keys(refs), batch)
            for i, outcome in settled:
                self.ledger.record(refs[i], outcome)
            if keep:
                yield [refs[i] for i in keep], batch

    def _keys(self, refs: list[int]) -> list[str]:
        return [self.ledger.key(ref) for ref in refs]

    def _whole_batches(self) -> Iterator[Pack]:
        """Batches of an own loader (dataloader or iterable dataset), rows numbered as they come."""
        data, stage, settings = self.data, self.stage, self.settings
        loader = stage.own_loader(
            lambda dataset, collate: data.make_loader(dataset, settings, collate)
        )
        if getattr(loader, "num_workers", 0) > 0:
            with contextlib.suppress(Exception):
                loader.worker_init_fn = data.quiet_worker(loader.worker_init_fn)
        iterator = data.start(loader)
        completed = False
        ledger = self.ledger
        assert isinstance(ledger, RowLedger)
        try:
            while not self.stop.is_set():
                try:
                    batch = data.fetch(iterator)
                except StopIteration:
                    break
                n = stage.size(batch)
                refs = ledger.add_rows([stage.row_name(batch, i) for i in range(n)])
                yield data.Pack(refs, batch)
            completed = not self.stop.is_set()
        except (GeneratorExit, ControlFlow):
            raise  # the generator closed by the run, or the grace period ended
        except BaseException as exc:
            ledger.fail_all(f"dataloader: {error_line(exc)}", traceback.format_exc())
        finally:
            data.close(iterator, hurry=not completed)

    def _record(self, refs: list[int], outcomes: list[Outcome]) -> None:
        for ref, outcome in zip(refs, outcomes, strict=False):
            self.ledger.record(ref, outcome)

    # -- compute (main thread) -----------------------------------------------------------------

    def _compute(self, refs: list[int], batch: Any, post: PostWorker) -> None:
        keys = self._keys(refs)
        result, failures = compute(self.stage, keys, batch)
        if failures:
            self._record(refs, failures)
            return
        if self.stage.writes_on_device:
            self._record(refs, write(self.stage, keys, batch, result))
            return
        try:
            result, event = self._to_host(result)
        except ControlFlow:
            raise
        except BaseException as exc:
            error = f"{self.stage.compute_step}: {error_line(exc)}"
            self._record(refs, failed(keys, error, traceback.format_exc()))
            return
        post.submit(Job(refs, batch, result, event))

    def _compute_rows(self, entries: list[Any], rows: list[Any], post: PostWorker) -> None:
        """A batch of items' rows computed, then queued for their items' outputs."""
        if not entries:
            return
        job = RowsJob(entries, None, None, None)
        if rows:
            keys = [self.ledger.key(ref) for ref, has_row, _ in entries if has_row]
            try:
                job.batch = self.stage.collate(rows)
                job.result, failures = compute(self.stage, keys, job.batch)
                if failures:
                    job.error = (failures[0].error or "", failures[0].traceback or "")
                else:
                    job.result, job.event = self._to_host(job.result)
            except ControlFlow:
                raise
            except BaseException as exc:
                job.error = (f"collate: {error_line(exc)}", traceback.format_exc())
        post.submit(job)  # type: ignore[arg-type]

    def _to_host(self, result: Any) -> tuple[Any, Any]:
        """Start copying device results to the host; the postprocessing thread waits on the event."""
        batches = self.batches
        if self.choice.type == "cpu" or not batches.has_device_tensors(result):
            return result, None
        if self.choice.type in ("cuda", "npu"):
            import torch

            host = batches.to_device(result, "cpu", True)
            event = getattr(torch, self.choice.type).Event()
            event.record()
            return host, event
        return batches.to_device(result, "cpu", False), None

    # -- writing (postprocessing thread) -------------------------------------------------------

    def _postprocess(self, job: Job | RowsJob) -> None:
        if isinstance(job, RowsJob):
            try:
                self.open_items.write(job, self._abandoned)
            except BaseException as exc:  # this thread never dies with work queued
                for ref, _, _ in job.entries:
                    key = self.ledger.key(ref)
                    self.ledger.record(
                        ref, failed([key], error_line(exc), traceback.format_exc())[0]
                    )
            return
        keys = self._keys(job.refs)
        try:
            if job.event is not None:
                job.event.synchronize()
            outcomes = write(self.stage, keys, job.batch, job.result, halt=self._abandoned)
        except BaseException as exc:  # sys.exit() included: this thread never dies with work queued
            outcomes = failed(keys, f"postprocessing: {error_line(exc)}", traceback.format_exc())
        self._record(job.refs, outcomes)

    def _abandoned(self) -> bool:
        """After `abandon`, the batch in hand stops at its next row (the ledger is closed)."""
        return self.ledger.closed
