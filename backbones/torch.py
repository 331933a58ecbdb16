"""`torch`: one device (cuda, npu, mps or cpu) fed by a torch DataLoader.

Rows load in DataLoader workers, batches are computed on the device under
`torch.inference_mode()`, and each batch's postprocessing (usually writing files) runs in
one postprocessing thread while the next batch computes; a bounded queue between the two
keeps memory flat when writing is the slower side. Only pending items reach the dataset,
and the model is loaded only when a batch has something to compute, so a rerun with
nothing left loads neither data nor the model.

Failures are per item: a row that fails to load, or whose postprocess_each raises, fails
that item; an exception in inference (or postprocess, or process) fails the batch's items;
a DataLoader worker that dies fails only the item that kills it (its batch is reloaded item
by item in fresh workers) and the loader restarts after it. A task's `sys.exit()` is a
failure like any exception, in whichever thread or process it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from backbones import torch_device
from backbones.base import Backbone, non_negative_int, positive_int, run_in_process
from dispatcher.environment import available_cpus
from dispatcher.execution import Outcome, attempt, error_line
from dispatcher.report import Reporter
from dispatcher.signals import ControlFlow, GraceExpired, StopSignal
from dispatcher.task import Item, Task, TorchTask

if TYPE_CHECKING:
    from backbones.torch_data import Pack

MAX_DEFAULT_WORKERS = 8
MAX_LISTED_ROW_FAILURES = 20


def default_workers() -> int:
    """DataLoader workers when not given: the usable CPUs minus one for the main process."""
    return min(MAX_DEFAULT_WORKERS, max(1, available_cpus() - 1))


class TorchBackbone(Backbone):
    name = "torch"
    summary = (
        "One device (cuda, npu, mps or cpu) fed by a torch DataLoader: batched inference, "
        "postprocessing overlapped with the next batch's compute."
    )

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(
            "--device",
            default="auto",
            help="cuda[:N], npu[:N] (needs torch_npu), mps, cpu, or auto: the first available "
            "of cuda, npu, mps, cpu (default: auto)",
        )
        parser.add_argument(
            "--batch-size", type=positive_int, default=16, help="items per batch (default: 16)"
        )
        parser.add_argument(
            "--num-workers",
            type=non_negative_int,
            default=None,
            help="DataLoader worker processes loading items; 0 loads in the main process "
            f"(default: usable CPUs minus one, at most {MAX_DEFAULT_WORKERS})",
        )
        parser.add_argument(
            "--prefetch-factor",
            type=positive_int,
            default=2,
            help="batches each worker loads ahead (default: 2)",
        )
        parser.add_argument(
            "--pin-memory",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="pin loaded batches in page-locked memory for faster non-blocking copies "
            "(default: on for cuda and npu)",
        )
        parser.add_argument(
            "--postprocess-queue",
            type=positive_int,
            default=2,
            help="computed batches that may wait for postprocessing before compute pauses "
            "(default: 2)",
        )

    @classmethod
    def incompatibility(cls, task_cls: type[Task]) -> str | None:
        if not issubclass(task_cls, TorchTask):
            return "it is not a TorchTask (CPU tasks run on --backbone mp or serial)"
        if task_cls.compute_mode() is None:
            return (
                "it implements neither inference() with postprocess_each() or postprocess(), "
                "nor process(device, batch)"
            )
        return None

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__(options)
        self.device_choice = torch_device.resolve(getattr(options, "device", "auto") or "auto")
        if getattr(options, "num_workers", None) is None:
            options.num_workers = default_workers()
        if getattr(options, "pin_memory", None) is None:
            options.pin_memory = self.device_choice.accelerated
        options.device = self.device_choice.name

    def run(self, task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        if not items:
            return
        assert isinstance(task, TorchTask)  # registry.resolve checked incompatibility()
        _TorchRun(self, task, items, reporter, stop).run()


# --- where outcomes go -----------------------------------------------------------------------


class ItemLedger:
    """Outcomes of plan items (by position), reported once each; thread-safe."""

    def __init__(self, items: list[Item], reporter: Reporter) -> None:
        self.items = items
        self.reporter = reporter
        self.lock = threading.Lock()
        self.recorded = [False] * len(items)
        self.closed = False

    def key(self, ref: int) -> str:
        return self.items[ref][0]

    def record(self, ref: int, outcome: Outcome) -> None:
        with self.lock:
            if self.closed or self.recorded[ref]:
                return
            self.recorded[ref] = True
            self.reporter.record_outcome(outcome)

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, completed: bool) -> None:
        self.close()


class RowLedger:
    """Rows of an own dataloader: one plan item for the whole run, failed if any row failed."""

    def __init__(self, item: Item, reporter: Reporter) -> None:
        self.item = item
        self.reporter = reporter
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.ok = 0
        self.failures: list[tuple[str, str, str]] = []
        self.closed = False
        self.fatal: tuple[str, str] | None = None

    def key(self, ref: int) -> str:
        return self.names.get(ref, f"row {ref}")

    def record(self, ref: int, outcome: Outcome) -> None:
        with self.lock:
            name = self.names.pop(ref, f"row {ref}")  # a recorded row needs its name no more
            if self.closed:
                return
            if outcome.ok:
                self.ok += 1
            else:
                self.failures.append((name, outcome.error or "failed", outcome.traceback or ""))

    def fail_all(self, error: str, tb: str) -> None:
        """The dataloader broke: the whole-run item fails with this error."""
        with self.lock:
            self.fatal = (error, tb)

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, completed: bool) -> None:
        self.close()
        if self.fatal is not None:
            error, tb = self.fatal
            self.reporter.record_outcome(Outcome(self.item[0], False, error, tb))
            return
        if not completed:
            return  # interrupted: the whole-run item counts as not run
        if not self.failures:
            self.reporter.record_outcome(Outcome(self.item[0], True))
            return
        total = self.ok + len(self.failures)
        first_key, first_error, _ = self.failures[0]
        listed = self.failures[:MAX_LISTED_ROW_FAILURES]
        details = "\n".join(f"--- {key}: {error}\n{tb}" for key, error, tb in listed)
        more = len(self.failures) - len(listed)
        if more:
            details += f"\n... and {more} more failed rows"
        self.reporter.record_outcome(
            Outcome(
                self.item[0],
                False,
                f"{len(self.failures)} of {total} rows failed; first {first_key}: {first_error}",
                details,
            )
        )


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


class _TorchRun:
    """The state of one run of the torch backbone: device, loader, ledger, postprocessing."""

    THREAD_EXIT_SECONDS = 5.0  # for the postprocessing thread to finish the row in hand

    def __init__(
        self,
        backbone: TorchBackbone,
        task: TorchTask,
        items: list[Item],
        reporter: Reporter,
        stop: StopSignal,
    ) -> None:
        import torch

        from backbones import torch_data

        self.torch = torch
        self.data = torch_data
        self.task = task
        self.items = items
        self.stop = stop
        self.reporter = reporter
        self.options = backbone.options
        self.choice = backbone.device_choice
        self.device: Any = None
        self.mode = type(task).compute_mode()
        self.source = type(task).data_source()
        self.whole = (
            len(items) == 1 and items[0][0] == TorchTask.WHOLE_RUN_KEY and items[0][1] is None
        )
        self.ledger: ItemLedger | RowLedger = (
            RowLedger(items[0], reporter) if self.whole else ItemLedger(items, reporter)
        )
        self.check_after_load = task.checks_after_load
        self.model_state: str = "absent"  # absent | loaded | failed
        pin_device = "npu" if self.choice.type == "npu" else ""
        self.settings = torch_data.LoaderSettings(
            batch_size=self.options.batch_size,
            num_workers=self.options.num_workers,
            prefetch_factor=self.options.prefetch_factor,
            pin_memory=bool(self.options.pin_memory),
            pin_memory_device=pin_device,
        )
        self.non_blocking = self.choice.accelerated

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        # After a signal: no new batches; computed ones are written within the grace
        # period; then GraceExpired ends whatever is still running in this thread.
        self.device = torch_device.activate(self.choice)
        completed = run_in_process(self.task, self.reporter, self.stop, self._run_batches)
        if completed is not None:
            self.ledger.finish(completed)

    def _run_batches(self) -> bool:
        """Load, compute and postprocess every batch; True when the run went to the end."""
        completed = False
        post = PostWorker(self._postprocess, self.options.postprocess_queue)
        stream: Any = None
        try:
            stream = self._stream()
            completed = self._loop(stream, post)
            drained = post.finish(self._grace_left)
            completed = completed and drained and not self.stop.is_set()
        except GraceExpired:
            completed = False
        finally:
            post.abandon()
            self.ledger.close()
            self._close_stream(stream, hurry=not completed)
            post.join(self.THREAD_EXIT_SECONDS)
        return completed

    def _grace_left(self) -> float | None:
        """Seconds left of the grace period once a stop was asked for; None before."""
        deadline = self.stop.deadline()
        return None if deadline is None else deadline - time.monotonic()

    def _stream(self) -> Iterable[Pack]:
        if self.whole:
            return self._whole_batches()
        if self.source == "dataset":
            dataset = self.task.take_dataset()
            indices = [payload for _, payload in self.items]

            def make(positions: list[int]) -> Any:
                return self.data.IndexedDataset(dataset, indices, positions)

        else:

            def make(positions: list[int]) -> Any:
                return self.data.ItemDataset(self.task, self.items, positions)

        return self.data.PackStream(
            make, len(self.items), self.settings, self.stop.is_set, self.reporter.note
        )

    def _close_stream(self, stream: Any, hurry: bool) -> None:
        if isinstance(stream, self.data.PackStream):
            stream.close(hurry)
        elif stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # the whole-run generator closes its loader in its finally

    def _loop(self, stream: Iterable[Pack], post: PostWorker) -> bool:
        """Compute every batch; False when the run ended early (a stop, a failed model load)."""
        if isinstance(stream, self.data.PackStream) and not self.check_after_load:
            stream.prime()  # workers start loading while the model loads
            if not self._ensure_model():
                return False
        for refs, batch in self._batches(stream):
            if not self._ensure_model():
                return False
            self._compute(refs, batch, post)
            if self.stop.is_set():
                return False
        return not self.stop.is_set()

    def _batches(self, stream: Iterable[Pack]) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """(refs, batch) of rows left to compute, after recording load failures and done rows."""
        for pack in stream:
            if self.stop.is_set():
                return
            for position, error, tb in pack.failed:
                self.ledger.record(position, self._outcome(position, False, error, tb))
            refs, batch = pack.positions, pack.batch
            if batch is None or not refs:
                continue
            if self.check_after_load:
                refs, batch = self._drop_done(refs, batch)
                if not refs:
                    continue
            yield refs, batch

    def _whole_batches(self) -> Iterator[Pack]:
        """Batches of an own dataloader (or iterable dataset), rows numbered as they come."""
        data = self.data
        if self.source == "dataloader":
            loader = self.task.get_dataloader()
            if getattr(loader, "num_workers", 0) > 0:
                with contextlib.suppress(Exception):
                    loader.worker_init_fn = data.quiet_worker(loader.worker_init_fn)
        else:
            settings = self.settings
            loader = data.make_loader(self.task.take_dataset(), settings, data.collate_rows)
        iterator = data.start(loader)
        seen = 0
        completed = False
        try:
            while not self.stop.is_set():
                try:
                    batch = data.fetch(iterator)
                except StopIteration:
                    break
                if not isinstance(batch, Mapping):
                    raise TypeError(
                        f"the dataloader must yield dict batches, got {type(batch).__name__}"
                    )
                n = data.batch_length(batch)
                refs = list(range(seen, seen + n))
                seen += n
                assert isinstance(self.ledger, RowLedger)
                for i, ref in enumerate(refs):
                    name = self.task.row_key(data.row_of(batch, i))
                    if name is not None:
                        self.ledger.names[ref] = name
                yield data.Pack(refs, dict(batch))
            completed = not self.stop.is_set()
        except (GeneratorExit, ControlFlow):
            raise  # the generator closed by the run, or the grace period ended
        except BaseException as exc:
            assert isinstance(self.ledger, RowLedger)
            self.ledger.fail_all(f"dataloader: {error_line(exc)}", traceback.format_exc())
        finally:
            data.close(iterator, hurry=not completed)

    # -- model and done rows -------------------------------------------------------------------

    def _ensure_model(self) -> bool:
        if self.model_state == "absent":
            try:
                self.task.load_model(self.device)
            except ControlFlow:
                raise
            except BaseException as exc:
                # Nothing can run without the model: the run stops, the items stay pending.
                self.model_state = "failed"
                self.reporter.abort(f"load_model failed: {error_line(exc)}", traceback.format_exc())
                return False
            self.model_state = "loaded"
        return self.model_state == "loaded"

    def _drop_done(
        self, refs: list[int], batch: dict[str, Any]
    ) -> tuple[list[int], dict[str, Any]]:
        """Rows of own data found done after loading: recorded as done, not computed."""
        data = self.data
        try:
            if type(self.task).done_check() == "batch":
                done = list(range(len(refs))) if self.task.is_executed(batch) else []
            else:
                done = [
                    i
                    for i in range(len(refs))
                    if self.task.is_each_executed(**data.row_of(batch, i))
                ]
        except ControlFlow:
            raise
        except BaseException as exc:
            self._fail(refs, f"done-check failed: {error_line(exc)}", traceback.format_exc())
            return [], batch
        if not done:
            return refs, batch
        for i in done:
            self.ledger.record(refs[i], self._outcome(refs[i], True))
        done_set = set(done)
        keep = [i for i in range(len(refs)) if i not in done_set]
        if not keep:
            return [], batch
        return [refs[i] for i in keep], data.select_rows(batch, keep)

    def _outcome(
        self, ref: int, ok: bool, error: str | None = None, tb: str | None = None
    ) -> Outcome:
        return Outcome(self.ledger.key(ref), ok, error, tb)

    def _fail(self, refs: list[int], error: str, tb: str) -> None:
        for ref in refs:
            self.ledger.record(ref, self._outcome(ref, False, error, tb))

    # -- compute (main thread) -----------------------------------------------------------------

    def _compute(self, refs: list[int], batch: dict[str, Any], post: PostWorker) -> None:
        torch = self.torch
        if self.mode == "process":

            def call(outputs: dict[str, list[Any]]) -> None:
                on_device = self._on_device(batch)
                with torch.inference_mode():
                    self.task.process(self.device, {**on_device, **outputs})

            self._staged_batch(refs, call)
            return
        try:
            on_device = self._on_device(batch)
            with torch.inference_mode():
                result = self.task.inference(self.device, len(refs), **on_device)
            result, event = self._to_host(result)
        except ControlFlow:
            raise
        except BaseException as exc:
            self._fail(refs, f"inference: {error_line(exc)}", traceback.format_exc())
            return
        del on_device
        post.submit(Job(refs, batch, result, event))

    def _on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch's tensors on the device (non-blocking from pinned memory); cpu: as is."""
        if self.choice.type == "cpu":
            return batch
        return self.data.to_device(batch, self.device, self.non_blocking)

    def _to_host(self, result: Any) -> tuple[Any, Any]:
        """Start copying device results to the host; the postprocessing thread waits on the event."""
        data = self.data
        if self.choice.type == "cpu" or not data.has_device_tensors(result):
            return result, None
        if self.choice.type in ("cuda", "npu"):
            host = data.to_device(result, "cpu", True)
            event = getattr(self.torch, self.choice.type).Event()
            event.record()
            return host, event
        return data.to_device(result, "cpu", False), None

    # -- postprocessing (postprocessing thread) ------------------------------------------------

    def _postprocess(self, job: Job) -> None:
        try:
            if job.event is not None:
                job.event.synchronize()
            if self.mode == "postprocess_each":
                self._postprocess_each(job)
            else:

                def call(outputs: dict[str, list[Any]]) -> None:
                    self.task.postprocess(len(job.refs), job.result, **{**job.batch, **outputs})

                self._staged_batch(job.refs, call)
        except BaseException as exc:  # sys.exit() included: this thread never dies with work queued
            self._fail(job.refs, f"postprocessing: {error_line(exc)}", traceback.format_exc())

    def _postprocess_each(self, job: Job) -> None:
        n = len(job.refs)
        for i, ref in enumerate(job.refs):
            if self.ledger.closed:
                return
            key = self.ledger.key(ref)
            self.ledger.record(ref, attempt(key, partial(self._write_row, job, i, n, key)))

    def _write_row(self, job: Job, i: int, n: int, key: str) -> None:
        """postprocess_each for row `i`: its batch fields, its result row, its staged outputs."""
        data = self.data
        kwargs = data.row_of(job.batch, i)
        result = data.row_of(job.result, i)
        if isinstance(job.result, Mapping):
            kwargs.update(result)
        else:
            kwargs["result"] = result
        with self.task.staged_outputs(key) as outputs:
            kwargs.update(outputs)
            self.task.postprocess_each(i, n, **kwargs)

    def _staged_batch(self, refs: list[int], call: Callable[[dict[str, list[Any]]], None]) -> None:
        """Run a batch-level call with every item's staged outputs; commit each item's alone.

        Outputs are passed as lists (one entry per row) under their usual names; a plain
        task declares none, so nothing is added.
        """
        with contextlib.ExitStack() as claims:
            try:
                # Every item of the batch claimed at once (never waiting while holding one).
                claims.enter_context(self.task.claim_outputs([self.ledger.key(r) for r in refs]))
            except Exception as exc:
                self._fail(refs, error_line(exc), traceback.format_exc())
                return
            self._staged_batch_claimed(refs, call)

    def _staged_batch_claimed(
        self, refs: list[int], call: Callable[[dict[str, list[Any]]], None]
    ) -> None:
        entered: list[tuple[int, Any]] = []
        outputs: list[dict[str, Any]] = []
        try:
            for ref in refs:
                manager = self.task.staged_outputs(self.ledger.key(ref))
                outputs.append(manager.__enter__())
                entered.append((ref, manager))
            names = list(outputs[0]) if outputs else []
            lists = {name: [o.get(name) for o in outputs] for name in names}
            call(lists)
        except BaseException as exc:
            info = sys.exc_info()
            for _, manager in reversed(entered):
                with contextlib.suppress(Exception):
                    manager.__exit__(*info)  # staged outputs removed, also on GraceExpired
            if isinstance(exc, ControlFlow):
                raise
            self._fail(refs, error_line(exc), traceback.format_exc())
            return
        for ref, manager in entered:
            key = self.ledger.key(ref)
            self.ledger.record(ref, attempt(key, partial(manager.__exit__, None, None, None)))
