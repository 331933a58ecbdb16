"""The one base class every execution engine implements."""

from __future__ import annotations

import argparse
from typing import ClassVar

from dispatcher.report import Reporter
from dispatcher.signals import StopSignal
from dispatcher.task import Item, Task


class Backbone:
    """Runs pending items; never enumerates, shards or checks outputs (the plan did that).

    Subclasses set `name` and `summary`, declare options in `add_arguments`, and implement
    `run`, calling `reporter.record_outcome` once per item and stopping new work when
    `stop.is_set()`.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """Declare this backbone's command-line options (shown by `-hb`)."""

    @classmethod
    def incompatibility(cls, task_cls: type[Task]) -> str | None:
        """Why this backbone cannot run `task_cls`, or None if it can."""
        return None

    def run(self, task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        raise NotImplementedError
