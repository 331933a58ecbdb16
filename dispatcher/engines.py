"""The seam between the core and the execution engines: the `Backbone` interface and its registry.

The core calls engines only through what is defined here. Engines live above the core
(`backbones/`, or a third party's package); the core names the built-ins by import path
and imports one only when a run asks for it, so no core module imports `backbones`, and
naming an engine imports nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, ClassVar

from dispatcher.errors import UsageError
from dispatcher.stage import Stage
from dispatcher.task import Task

if TYPE_CHECKING:
    from dispatcher.execution.signals import StopSignal
    from dispatcher.report.reporter import Reporter
    from dispatcher.task import Item

ENTRY_POINT_GROUP = "dispatcher.backbones"
AUTO = "auto"
BUILTIN: dict[str, str] = {
    "serial": "backbones.serial:SerialBackbone",
    "mp": "backbones.mp:ProcessPoolBackbone",
    "torch": "backbones.torch:TorchBackbone",
}


class Backbone:
    """Runs a stage over pending items; never enumerates, shards or checks outputs (the
    plan did that) and never calls a task's methods (the stage does, through
    `dispatcher.execution.steps`).

    Subclasses set `name` and `summary`, declare options in `add_arguments`, and implement
    `run`, passing items to `execution.run_batch` (or its parts), calling
    `reporter.record_outcome` once per item and stopping new work when `stop.is_set()`.
    Engines import it as `backbones.Backbone`.
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

    def run(self, stage: Stage, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        raise NotImplementedError


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
