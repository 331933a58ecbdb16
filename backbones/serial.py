"""`serial`: every item in this process, one after another; breakpoints and pdb work.

Any stage runs here, a torch task's included: rows load in this process, batches compute
on the device named (cpu unless told), results are written right after. So a torch task
can be debugged without DataLoader workers or threads.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterator
from typing import Any

from backbones.base import (
    Backbone,
    add_retries_option,
    positive_float,
    positive_int,
    run_in_process,
)
from backbones.torch import device as torch_device
from dispatcher.engines import (
    ControlFlow,
    Item,
    ItemLedger,
    Outcome,
    Reporter,
    RowLedger,
    RunContext,
    RunLease,
    Stage,
    StopSignal,
    error_line,
    run_batch,
    run_collated,
)


class ItemTimeout(Exception):
    """Raised inside an item (or batch) that ran past --timeout; it fails, the run goes on."""


class SerialBackbone(Backbone):
    name = "serial"
    summary = (
        "In-process loop, one item (or batch) at a time: for debugging (pdb and breakpoints "
        "work), torch tasks included."
    )

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(
            "--device",
            default="cpu",
            help="device of a torch task: cpu, cuda[:N], npu[:N], mps or auto (default: cpu)",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="items per batch of a batched task (default: the task style's, 16 for a "
            "torch task; other tasks run item by item)",
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=None,
            metavar="SECONDS",
            help="fail an item (a batch, for a batched task) that runs longer than this "
            "(default: none)",
        )
        add_retries_option(parser, "raised, timed out")

    @classmethod
    def check_options(cls, options: argparse.Namespace) -> None:
        torch_device.parse(getattr(options, "device", None) or "auto")

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__(options)
        self.device_choice: torch_device.DeviceChoice | None = None
        device = getattr(options, "device", "cpu") or "cpu"
        torch_device.parse(device)  # a bad name is a usage error now, before any work
        if device != "cpu":
            self.device_choice = torch_device.resolve(device)
            options.device = self.device_choice.name

    def run(self, context: RunContext) -> None:
        stage, items, reporter, stop = context.stage, context.items, context.reporter, context.stop
        if not items:
            return
        device = None
        if stage.uses_device:
            choice = self.device_choice or torch_device.resolve("cpu")
            device = torch_device.activate(choice)
        loop = _Loop(stage, items, reporter, stop, self.options, context.lease)
        run_in_process(stage, reporter, stop, loop.run, device)


class _Loop:
    def __init__(
        self,
        stage: Stage,
        items: list[Item],
        reporter: Reporter,
        stop: StopSignal,
        options: argparse.Namespace,
        lease: RunLease | None = None,
    ) -> None:
        self.stage = stage
        self.lease = lease
        self.items = items
        self.reporter = reporter
        self.stop = stop
        self.timeout: float | None = getattr(options, "timeout", None)
        self.retries: int = getattr(options, "retries", 0) or 0
        size = getattr(options, "batch_size", None)
        self.batch_size = (size or stage.default_batch_size) if stage.batched else 1

    def run(self) -> None:
        if self.stage.source.whole_run:
            self._whole_run()
            return
        # Failed items with retries left come back for another pass, after the others.
        ledger = ItemLedger(self.items, self.reporter, self.retries)
        refs = list(range(len(self.items)))
        while refs and not self.stop.is_set():
            for batch in self._batches(refs):
                if self.stop.is_set():
                    return
                items = [self.items[ref] for ref in batch]
                self._ask_lease()
                outcomes = self._timed(lambda b=items: run_batch(self.stage, b))
                for ref, outcome in zip(batch, outcomes, strict=True):
                    ledger.record(ref, outcome)
            refs = ledger.take_again()

    def _ask_lease(self) -> None:
        """Whether the next batch commits alone; nothing runs between two batches, so a
        newcomer may start at once when the lease no longer allows it."""
        lease = self.lease
        if lease is None:
            return
        alone = lease.alone()
        if not alone and lease.switching:
            lease.drained()
        self.stage.work_alone(alone)

    def _batches(self, refs: list[int]) -> Iterator[list[int]]:
        size = self.batch_size
        for start in range(0, len(refs), size):
            yield refs[start : start + size]

    def _timed(self, call: Any) -> list[Outcome]:
        """`call()` under --timeout: SIGALRM raises `ItemTimeout` inside the item running."""
        if self.timeout is None:
            return call()
        seconds = self.timeout

        def expire(signum: int, frame: object) -> None:
            raise ItemTimeout(f"ran longer than {seconds:g} s (--timeout)")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _whole_run(self) -> None:
        """Batches of an own loader, rows numbered as they come; one outcome for the run."""
        stage = self.stage
        ledger = RowLedger(self.items[0], self.reporter)
        completed = False
        try:
            for batch in stage.own_loader(self._loader_for):
                if self.stop.is_set():
                    break
                n = stage.size(batch)
                refs = ledger.add_rows([stage.row_name(batch, i) for i in range(n)])
                keys = [ledger.key(ref) for ref in refs]
                for ref, outcome in zip(refs, run_collated(stage, keys, batch), strict=True):
                    ledger.record(ref, outcome)
            completed = not self.stop.is_set()
        except ControlFlow:
            raise
        except BaseException as exc:
            import traceback

            ledger.fail_all(f"dataloader: {error_line(exc)}", traceback.format_exc())
        ledger.finish(completed)

    def _loader_for(self, dataset: Any, collate: Any) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=collate)
