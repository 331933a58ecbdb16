"""`serial`: every item in this process, one after another; breakpoints and pdb work."""

from __future__ import annotations

import contextlib

from backbones.base import Backbone
from dispatcher.execution import run_one
from dispatcher.report import Reporter
from dispatcher.signals import GraceExpired, StopSignal
from dispatcher.task import Item, Task


class SerialBackbone(Backbone):
    name = "serial"
    summary = "In-process loop, one item at a time: for debugging (pdb and breakpoints work)."

    def run(self, task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        if not items:
            return
        stop.interrupt_in_place()
        task.setup()
        try:
            for item in items:
                if stop.is_set():
                    break
                try:
                    outcome = run_one(task, item)
                except GraceExpired:
                    break  # abandoned: its staging was cleaned, it counts as not run
                reporter.record_outcome(outcome)
        finally:
            with contextlib.suppress(GraceExpired):
                task.teardown()
