"""`torch`: one device (cuda, npu, mps or cpu) fed by a torch DataLoader, or several
(`--devices`), one process each, fed from one queue (`backbones/torch/devices.py`).

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
failure like any exception, in whichever thread or process it runs. With `--retries`,
failed items run again in a pass after the others. There is no per-item timeout: a
batch computes on the device as one call, which nothing can interrupt safely.

The run itself is `backbones/torch/run.py`; this module holds the options and picks it.
"""

from __future__ import annotations

import argparse

from backbones.base import Backbone, add_retries_option, non_negative_int, positive_int
from backbones.torch import device as torch_device
from dispatcher.engines import (
    RunContext,
    UsageError,
    available_cpus,
)

MAX_DEFAULT_WORKERS = 8


def default_workers(devices: int = 1) -> int:
    """DataLoader workers per device when not given: the usable CPUs minus one for each
    device's own process, shared among the devices."""
    return min(MAX_DEFAULT_WORKERS, max(1, (available_cpus() - devices) // devices))


class TorchBackbone(Backbone):
    name = "torch"
    summary = (
        "One device (cuda, npu, mps or cpu), or every device of a node (--devices), fed "
        "by torch DataLoaders: batched inference, postprocessing overlapped with compute."
    )

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(
            "--device",
            default=None,
            help="cuda[:N], npu[:N] (needs torch_npu), mps, cpu, or auto: the first available "
            "of cuda, npu, mps, cpu (default: auto)",
        )
        parser.add_argument(
            "--devices",
            default=None,
            metavar="LIST",
            help="several devices of this node, one process each, fed from one queue so "
            f"faster ones take more work: {torch_device.DEVICES_FORMS} (instead of --device)",
        )
        parser.add_argument(
            "--start-method",
            choices=("fork", "forkserver", "spawn"),
            default=None,
            help="how --devices starts its device processes (default: fork for cpu, spawn "
            "for cuda and npu, which cannot be used in a forked process)",
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
        add_retries_option(
            parser, "its load, compute or write raised", ", in a pass after the others"
        )
        parser.add_argument(
            "--postprocess-queue",
            type=positive_int,
            default=2,
            help="computed batches that may wait for postprocessing before compute pauses "
            "(default: 2)",
        )

    @classmethod
    def check_options(cls, options: argparse.Namespace) -> None:
        devices = getattr(options, "devices", None)
        if devices is not None:
            if getattr(options, "device", None) is not None:
                raise UsageError("--device and --devices: give one (--devices lists several)")
            torch_device.parse_list(devices)
        else:
            torch_device.parse(getattr(options, "device", None) or "auto")

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__(options)
        self.check_options(options)
        self.device_choices: list[torch_device.DeviceChoice] = []
        if getattr(options, "devices", None) is not None:
            self.device_choices = torch_device.resolve_list(options.devices)
            self.device_choice = self.device_choices[0]
            options.devices = ",".join(choice.name for choice in self.device_choices)
            if getattr(options, "start_method", None) is None:
                from backbones.torch.devices import start_method

                options.start_method = start_method(self.device_choices)
        else:
            self.device_choice = torch_device.resolve(getattr(options, "device", None) or "auto")
        if getattr(options, "num_workers", None) is None:
            options.num_workers = default_workers(len(self.device_choices) or 1)
        if getattr(options, "pin_memory", None) is None:
            options.pin_memory = self.device_choice.accelerated
        if not self.device_choices:
            options.device = self.device_choice.name

    def run(self, context: RunContext) -> None:
        stage, items, reporter, stop = context.stage, context.items, context.reporter, context.stop
        if not items:
            return
        if self.device_choices and not stage.source.whole_run:
            from backbones.torch.devices import DevicePool

            DevicePool(self.options, self.device_choices, context).run()
            return
        if self.device_choices:
            reporter.note(
                f"an own dataloader is one item: it runs on {self.device_choice.name} alone"
            )
        from backbones.torch.run import TorchRun

        TorchRun(self.options, self.device_choice, stage, items, reporter, stop).run()
