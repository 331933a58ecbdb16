"""Plain and template `Task`s: item by item, `process(**item, **outputs)` in the worker."""

from __future__ import annotations

from typing import Any

from dispatcher.stage import Row, Stage
from dispatcher.task import Task


class TaskStage(Stage):
    """A CPU task: its item's keyword arguments load, `process` computes and writes.

    Not batched: each item is loaded and written inside its staged outputs in one step,
    so a plain task costs what a loop calling `process` would.
    """

    style = "task"

    @classmethod
    def accepts(cls, obj: type) -> bool:
        return isinstance(obj, type) and issubclass(obj, Task)

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        self.task.process(**row, **outputs)
