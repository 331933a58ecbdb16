"""The task contract: what user code implements, in kagurazaka's vocabulary.

A CPU task lists its items (`generate_tasks`), says which are done (`is_executed`) and
processes one (`process`). A torch task adds the model and batch methods listed in
`TorchTask`. Options come from `add_arguments`, configuration from the class attribute
`mixin` (a declaration with placeholders), filled per run into `self.mixin`.

The plan talks to a task only through `iter_items`, `executed_mask` and `run_item`;
templates override those three to work on keys and directory listings instead of dicts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from dispatcher.sharding import ShardSpec

Item = tuple[str, Any]
"""(key, payload): the key is stable and sortable; the payload is what `process` receives."""


def _restore_task(
    source: tuple[str, str] | None, cls_ref: type | None, state: dict[str, Any]
) -> Task:
    if source is not None:
        from dispatcher.loader import load_task_class

        cls = load_task_class(*source)
    else:
        assert cls_ref is not None
        cls = cls_ref
    task = cls.__new__(cls)
    task.__dict__.update(state)
    return task


class Task:
    """A CPU task: one call of `process(**item)` per item."""

    mixin: ClassVar[Any] = None
    """Declaration of this task's configuration: a tree that may hold placeholders."""

    __dispatch_source__: ClassVar[tuple[str, str] | None] = None

    def __init__(self, args: argparse.Namespace | None = None, mixin: Any = None) -> None:
        self.args = args if args is not None else argparse.Namespace()
        if mixin is not None:
            self.mixin = mixin

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Declare the task's own command-line options (shown by `-h`)."""

    def setup(self) -> None:
        """Runs once in each worker process before its first item (load models here)."""

    def teardown(self) -> None:
        """Runs once in each worker process after its last item."""

    def generate_tasks(self) -> Iterable[dict[str, Any]]:
        """Every item of the dataset, each a dict of keyword arguments for `process`."""
        raise NotImplementedError(f"{type(self).__name__} must implement generate_tasks()")

    def is_executed(self, **item: Any) -> bool:
        """Whether this item's outputs already exist (it is then skipped)."""
        return False

    def process(self, **item: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    # --- what the plan and the backbones call -------------------------------------------

    def validate(self) -> list[str]:
        """Configuration problems to report before any work starts, one line each."""
        return []

    def shard_specs(self) -> list[ShardSpec]:
        """The task's own shards (from its declaration); the CLI's `--shard` applies inside them."""
        return []

    def item_key(self, item: dict[str, Any]) -> str:
        """A stable key for sorting and hash sharding: canonical JSON of the item."""
        return json.dumps(item, sort_keys=True, default=str, separators=(",", ":"))

    def iter_items(self) -> Iterator[Item]:
        for item in self.generate_tasks():
            if not isinstance(item, dict):
                raise TypeError(f"generate_tasks() must yield dicts, got {type(item).__name__}")
            yield self.item_key(item), item

    def executed_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        """For each item, whether it is done. Runs in the parent, before dispatch."""
        for _, payload in items:
            yield bool(self.is_executed(**payload))

    def item_payload(self, key: str, payload: Any) -> dict[str, Any]:
        """The keyword arguments of `process` for an item (templates build them from the key)."""
        return payload

    @contextlib.contextmanager
    def staged_outputs(self, key: str) -> Iterator[dict[str, Any]]:
        """Keyword arguments naming where the item's outputs are to be written.

        Templates yield staging paths here and commit them atomically when the block
        succeeds; a plain task declares no outputs (it may use `atomic_write` itself).
        """
        yield {}

    def run_item(self, key: str, payload: Any) -> None:
        """Process one item in a worker; raising marks it failed."""
        kwargs = self.item_payload(key, payload)
        with self.staged_outputs(key) as outputs:
            self.process(**kwargs, **outputs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt in workers by re-importing the task file, so any start method works.
        source = type(self).__dispatch_source__
        cls_ref = None if source is not None else type(self)
        return (_restore_task, (source, cls_ref, dict(self.__dict__)))


class TorchTask(Task):
    """A task run in batches on one device by the `torch` backbone.

    Implement `load_model(device)`, a data source (`get_dataset()`, or `generate_tasks()`
    with `load_data(**item)`, or your own `get_dataloader()`), a done-check
    (`is_each_executed(**item)` or batch-level `is_executed(batch)`), and either
    `inference(device, batch_size, **batch)` with `postprocess_each(batch_idx, batch_size,
    **batch_and_result)` or `postprocess(batch_size, results, **batch)`, or a whole
    `process(device, batch)`.
    """

    def load_model(self, device: Any) -> None:
        """Load the model onto `device`; called once, and only when something is left to run."""

    def get_dataset(self) -> Any:
        raise NotImplementedError

    def get_dataloader(self) -> Any:
        raise NotImplementedError

    def load_data(self, **item: Any) -> dict[str, Any]:
        """Load one item in a DataLoader worker; returns a dict of tensors and fields."""
        return item

    def is_each_executed(self, **item: Any) -> bool:
        return False

    def inference(self, device: Any, batch_size: int, **batch: Any) -> Any:
        raise NotImplementedError

    def postprocess_each(
        self, batch_idx: int, batch_size: int, **input_batch_and_result: Any
    ) -> None:
        raise NotImplementedError

    def postprocess(self, batch_size: int, results: Any, **batch: Any) -> None:
        raise NotImplementedError

    def executed_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        for _, payload in items:
            yield bool(self.is_each_executed(**payload))


def overrides(task_cls: type, name: str, base: type = TorchTask) -> bool:
    """Whether `task_cls` implements `name` itself rather than inheriting `base`'s."""
    return getattr(task_cls, name, None) is not getattr(base, name, None)
