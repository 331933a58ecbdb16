"""The seam between the core and the execution engines: the `Backbone` interface, the
`RunContext` an engine runs, the engines by name, and every core name an engine uses.

The core calls engines only through what is defined here, and engines (`backbones/`, a
third party's package) import the core only from here: the stage, the execution steps, the
ledgers, the stop signal, the reporter. The core names the built-in engines by import path
and imports one only when a run asks for it, so no core module imports `backbones`, and
naming an engine imports nothing heavy (`batches`, which needs torch, loads on first use).
"""

from __future__ import annotations

import argparse
import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher.environment import available_cpus, process_alive
from dispatcher.errors import MalformedInput, UsageError
from dispatcher.execution.item_rows import OpenItems, RowBatcher, RowsJob
from dispatcher.execution.signals import (
    ControlFlow,
    GraceExpired,
    StopSignal,
    blocked_stop_signals,
    signal_name,
    unblock_stop_signals,
)
from dispatcher.execution.steps import (
    Outcome,
    StageFailed,
    after_load,
    compute,
    error_line,
    failed,
    is_task_exit,
    load_row,
    malformed_message,
    run_batch,
    run_collated,
    run_item,
    write,
)
from dispatcher.outputs.lease import RunLease
from dispatcher.report.ledger import ItemLedger, Ledger, Retries, RowLedger
from dispatcher.report.log import logger, note
from dispatcher.report.reporter import Reporter
from dispatcher.report.task_log import keep_run_log
from dispatcher.stage import Stage
from dispatcher.task import Item, Task

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "AUTO",
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Backbone",
    "ControlFlow",
    "GraceExpired",
    "Item",
    "RunLease",
    "ItemLedger",
    "Ledger",
    "MalformedInput",
    "OpenItems",
    "Outcome",
    "Reporter",
    "Retries",
    "RowBatcher",
    "RowLedger",
    "RowsJob",
    "RunContext",
    "Stage",
    "StageFailed",
    "StopSignal",
    "Task",
    "UsageError",
    "after_load",
    "auto_choice",
    "available_cpus",
    "batches",
    "blocked_stop_signals",
    "compute",
    "error_line",
    "failed",
    "is_task_exit",
    "keep_run_log",
    "known_names",
    "load",
    "load_row",
    "logger",
    "malformed_message",
    "note",
    "process_alive",
    "resolve",
    "run_batch",
    "run_collated",
    "run_engine",
    "run_item",
    "signal_name",
    "unblock_stop_signals",
    "write",
]


def __getattr__(name: str) -> Any:
    """`batches` (collation and moving batches to a device) loads torch: on first use only."""
    if name == "batches":
        from dispatcher.execution import batches

        return batches
    raise AttributeError(f"module 'dispatcher.engines' has no attribute {name!r}")


if TYPE_CHECKING:
    batches: ModuleType

ENTRY_POINT_GROUP = "dispatcher.backbones"
AUTO = "auto"
BUILTIN: dict[str, str] = {
    "serial": "backbones.serial:SerialBackbone",
    "mp": "backbones.mp:ProcessPoolBackbone",
    "torch": "backbones.torch:TorchBackbone",
    "ray": "backbones.ray:RayBackbone",
}


@dataclass(frozen=True)
class RunContext:
    """What an engine runs: the stage, the plan's pending items, where outcomes go, when to
    stop."""

    stage: Stage
    items: list[Item]
    """The pending items, in the order the plan put them."""
    reporter: Reporter
    """Told every item's outcome (`record_outcome`), once each, in the parent process."""
    stop: StopSignal
    """Set by SIGINT/SIGTERM: start nothing new; in-flight items get the grace period."""
    run_dir: str | None = None
    """The run's log folder (records, failures, the task's own logs)."""
    lease: RunLease | None = None
    """The run's lease at its output roots: an engine that asks `lease.alone()` before
    sending a batch, tells the stage (`stage.work_alone`) where the batch runs, and calls
    `lease.drained()` once no batch sent alone is running while `lease.switching`, lets
    lone runs commit without per-item claims. One that never asks claims every item."""


class Backbone:
    """Runs a stage over pending items; never enumerates, shards or checks outputs (the
    plan did that) and never calls a task's methods (the stage does, through
    `dispatcher.execution.steps`).

    Subclasses set `name` and `summary`, declare options in `add_arguments`, and implement
    `run(context)`, passing `context.items` to `run_batch` (or its parts), calling
    `context.reporter.record_outcome` once per item and stopping new work when
    `context.stop.is_set()`. Engines import it as `backbones.Backbone`.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """Declare this backbone's command-line options (shown by `-hb`)."""

    @classmethod
    def check_options(cls, options: argparse.Namespace) -> None:
        """Check options as far as can be done without touching this machine's devices.

        Used when a run is prepared to be submitted elsewhere (`dispatch submit`): a
        login node without a GPU must accept `--device cuda`. Raise `UsageError`.
        """

    @classmethod
    def incompatibility(cls, stage_cls: type[Stage], task_cls: type[Task]) -> str | None:
        """Why this backbone cannot run `task_cls` (run by the adapter `stage_cls`), or None.

        Asked before any work: a task a backbone cannot run is a usage error, exit 2.
        """
        return None

    def run(self, context: RunContext) -> None:
        raise NotImplementedError


def run_engine(backbone: Backbone, context: RunContext) -> None:
    """Run `context` on `backbone`; an engine written against the earlier
    `run(self, stage, items, reporter, stop)` is detected once per method and called so."""
    if _takes_context(type(backbone).run):
        backbone.run(context)
    else:
        run = backbone.run  # type: ignore[assignment]
        run(context.stage, context.items, context.reporter, context.stop)  # type: ignore[call-arg]


@functools.cache
def _takes_context(run: Any) -> bool:
    """Whether an engine's `run` takes one argument (the context) besides `self`."""
    import inspect

    parameters = inspect.signature(run).parameters.values()
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) <= 2


def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    """`auto`, the built-ins, then installed plugins' names (a plugin cannot take a built-in's)."""
    return [AUTO, *BUILTIN, *sorted(set(_entry_points()) - set(BUILTIN) - {AUTO})]


def load(name: str) -> type[Backbone]:
    """The backbone class registered under `name`; an unknown name lists the known ones."""
    if name in BUILTIN:
        module_name, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    plugin = _entry_points().get(name)
    if plugin is None:
        raise UsageError(f"unknown backbone '{name}' (known: {', '.join(known_names())})")
    try:
        cls = plugin.load()  # type: ignore[attr-defined]
    except Exception as exc:
        raise UsageError(f"backbone '{name}' failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise UsageError(f"backbone '{name}' ({plugin.value}) is not a backbones.Backbone subclass")  # type: ignore[attr-defined]
    return cls


def auto_choice(stage_cls: type[Stage] | None) -> str:
    """`auto`: a stage that uses a device (a torch task) goes to `torch`, any other to `mp`."""
    return "torch" if stage_cls is not None and stage_cls.uses_device else "mp"


def resolve(
    name: str, task_cls: type[Task] | None, stage_cls: type[Stage] | None = None
) -> type[Backbone]:
    """The backbone for `name` (or `auto`), refused before any work if it cannot run the task."""
    cls = load(auto_choice(stage_cls) if name == AUTO else name)
    if task_cls is not None and stage_cls is not None:
        reason = cls.incompatibility(stage_cls, task_cls)
        if reason:
            raise UsageError(f"backbone '{cls.name}' cannot run {task_cls.__name__}: {reason}")
    return cls
