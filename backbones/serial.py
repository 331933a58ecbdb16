"""`serial`: every item in this process, one after another; breakpoints and pdb work."""

from __future__ import annotations

from backbones.base import Backbone, item_by_item_problem, run_in_process
from dispatcher.execution import run_one
from dispatcher.report import Reporter
from dispatcher.signals import StopSignal
from dispatcher.task import Item, Task


class SerialBackbone(Backbone):
    name = "serial"
    summary = "In-process loop, one item at a time: for debugging (pdb and breakpoints work)."

    @classmethod
    def incompatibility(cls, task_cls: type[Task]) -> str | None:
        return item_by_item_problem(task_cls)

    def run(self, task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        if items:
            run_in_process(task, reporter, stop, lambda: self._loop(task, items, reporter, stop))

    @staticmethod
    def _loop(task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        for item in items:
            if stop.is_set():
                break
            reporter.record_outcome(run_one(task, item))
