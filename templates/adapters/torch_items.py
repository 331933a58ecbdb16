"""The item sources of `TorchTask`s that are not templates (a template brings its own).

A torch task lists its items with `generate_tasks` (checked in the plan, before anything
loads, by `is_each_executed(**item)` or by `is_executed` of a one-row batch), or brings its
own map-style dataset (its items are the indices), or its own dataloader or iterable
dataset (one item for the whole run). Rows of its own data are known only once loaded:
they are checked batch by batch (`done_after_load`). No outputs are declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dispatcher.items import Item, ItemSource, TaskItems, done_each

WHOLE_RUN_KEY = "(all batches)"
"""The one plan item of a run over an own dataloader or iterable dataset (rows unknown
upfront). It succeeds when every row did; `--shard` cannot split it (shard inside the loader)."""


def _row_of() -> Any:
    from dispatcher.execution.batches import row_of

    return row_of


class ListedItems(TaskItems):
    """`generate_tasks` items, done by the torch task's own check (`check`: `each` for
    `is_each_executed(**item)`, `batch` for `is_executed(batch)`, None for none)."""

    def __init__(self, task: Any, check: str | None) -> None:
        super().__init__(task)
        self.check = check

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        if self.check == "each":
            return done_each(self.task.is_each_executed, items)
        if self.check == "batch":
            return _batch_done(self.task.is_executed, items)
        return ItemSource.done_mask(self, items)


def _batch_done(is_executed: Any, items: Sequence[Item]) -> Iterator[bool]:
    for _, payload in items:
        yield bool(is_executed({name: [value] for name, value in payload.items()}))


class OwnRows(ItemSource):
    """The rows of the task's own data (`data`: `dataset` or `dataloader`): a map-style
    dataset's indices, or one item standing for every row of the run."""

    def __init__(self, task: Any, data: str, check: str | None) -> None:
        self.task = task
        self.data = data
        self.check = check
        self.checks_after_load = check is not None
        self.dataset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["dataset"] = None  # rebuilt by get_dataset() where it is needed
        return state

    def items(self) -> list[Item]:
        return list(self._rows())

    def _rows(self) -> Iterator[Item]:
        if self.data == "dataset":
            dataset = self.dataset = self.task.get_dataset()
            try:
                count = len(dataset)
            except TypeError:
                count = None  # an iterable dataset: its rows are known only by iterating
            if count is not None and hasattr(dataset, "__getitem__"):
                for index in range(count):
                    yield f"{index:012d}", index
                return
        self.whole_run = True
        yield WHOLE_RUN_KEY, None

    def payload(self, key: str, payload: Any) -> Mapping[str, Any]:
        """Row `payload` of the own map-style dataset (built once per process)."""
        if self.dataset is None:
            self.dataset = self.task.get_dataset()
        row = self.dataset[payload]
        if not isinstance(row, Mapping):
            raise TypeError(f"dataset rows must be dicts, got {type(row).__name__}")
        return row

    def take_dataset(self) -> Any:
        """The own dataset for a whole run's loader (the one listed, else a new one)."""
        dataset = self.dataset if self.dataset is not None else self.task.get_dataset()
        self.dataset = None
        return dataset

    def origin(self) -> str:
        return f"({type(self.task).__name__}.get_dataset() has no rows)"

    def done_after_load(self, batch: Any, size: int) -> list[bool] | None:
        if self.check == "batch":
            return [bool(self.task.is_executed(batch))] * size
        if self.check == "each":
            row_of, check = _row_of(), self.task.is_each_executed
            return [bool(check(**row_of(batch, i))) for i in range(size)]
        return None
