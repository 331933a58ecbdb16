"""Plain and template `Task`s: item by item, `process(**item, **outputs)` in the worker."""

from __future__ import annotations

from typing import Any

from dispatcher.stage import Row, Stage
from dispatcher.task import Task
from templates.parts import cut_parts, packed_parts


class TaskStage(Stage):
    """A CPU task: its item's keyword arguments load, `process` computes and writes.

    Not batched: each item is loaded and written inside its staged outputs in one step,
    so a plain task costs what a loop calling `process` would.
    """

    style = "task"

    @classmethod
    def accepts(cls, obj: type) -> bool:
        return isinstance(obj, type) and issubclass(obj, Task)

    def __init__(self, task: Task, force: bool = False) -> None:
        super().__init__(task, force)
        self.source, self.packed = packed_parts(self.source)
        """The output mode that packs an item's rows into one part (`templates/packed.py`)."""

    def split_rows(self, rows_per_item: int) -> str | None:
        """A row task with a packed output: its items become row ranges, each packed into
        its own part file (`templates/range_items.py`, `PartItems`)."""
        if cut_parts(self.source, rows_per_item):
            return None
        return super().split_rows(rows_per_item)

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        if self.packed is not None:
            from templates.packed import pack_rows

            pack_rows(self.task.process, row, outputs["rows"])
            return
        self.task.process(**row, **outputs)
