"""The task contract: what user code implements, in kagurazaka's vocabulary.

A CPU task lists its items (`generate_tasks`), says which are done (`is_executed`) and
processes one (`process`). A torch task adds the model and batch methods listed in
`TorchTask`. Options come from `add_arguments`, configuration from the class attribute
`mixin` (a declaration with placeholders), filled per run into `self.mixin`.

The plan and the backbones reach a task only through its adapter (`dispatcher.stage`)
and its item source (`item_source()`, `dispatcher.items`): a plain task's source lists
`generate_tasks` and asks `is_executed`; templates provide one that works on keys and
directory listings instead of dicts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher.items import Item, ItemSource, TaskItems
from dispatcher.outputs.records import provenance_path
from dispatcher.signatures import call_problems

if TYPE_CHECKING:
    from dispatcher.sharding import ShardSpec

__all__ = ["Item", "Task", "TorchTask"]


def _rebuild(cls: type[Task], state: dict[str, Any]) -> Task:
    """A task of a class pickled by reference (one defined in code, not loaded from a file)."""
    task = cls.__new__(cls)
    task.__dict__.update(state)
    return task


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a broken sys.modules entry
        return False


class Task:
    """A CPU task: one call of `process(**item)` per item."""

    mixin: ClassVar[Any] = None
    """Declaration of this task's configuration: a tree that may hold placeholders."""

    requires: ClassVar[dict[str, str]] = {}
    """Modules the task imports where it uses them, each with the pip extra that installs
    it (`{"av": "video"}`): a missing one is a usage error before any work, not a failure
    of every item."""

    __dispatch_source__: ClassVar[tuple[str, str] | None] = None
    """(file, class name) this class was loaded from, set by the loader."""
    __dispatch_restore__: ClassVar[Callable[[str, str, dict[str, Any]], Task] | None] = None
    """Set with `__dispatch_source__` by the loader: rebuilds a task in a worker from them,
    importing the file again, so any start method works (the loader imports this module)."""

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

    # --- what the adapters call -----------------------------------------------------------

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """One line per module of `requires` that is not installed (found without importing
        it, so start-up stays light)."""
        return [
            f"{cls.__name__} needs the module '{module}', which is not installed: "
            f'pip install -e ".[{extra}]"'
            for module, extra in cls.requires.items()
            if not _importable(module)
        ]

    def validate(self) -> list[str]:
        """Configuration problems to report before any work starts, one line each."""
        return []

    def argument_problems(self) -> list[str]:
        """Calls the run will make that this task's methods cannot take, one line each.

        Checked with `validate()`, before any work. A plain task's items are known only
        once listed: `item_problems` checks the first one at plan time instead.
        """
        return []

    def item_problems(self, item: dict[str, Any]) -> list[str]:
        """Why `process(**item)` cannot take the first item `generate_tasks` listed."""
        return call_problems(
            f"{type(self).__name__}.process", self.process, list(item), "its items pass"
        )

    def input_roots(self) -> list[str]:
        """Folders this task reads (the user's data: no output root may be one or hold one)."""
        return []

    def output_roots(self) -> list[str]:
        """Folders that hold this task's outputs only (the log directory must lie elsewhere)."""
        return []

    def provenance_path(self, root: str) -> str:
        """Where the record of the run that made `root`'s outputs is kept: inside the root
        (`dispatcher/outputs/records.py`); a task whose root is wholly its code's own puts it beside."""
        return provenance_path(root, type(self).__name__)

    def shard_specs(self) -> list[ShardSpec]:
        """The task's own shards (from its declaration); the CLI's `--shard` applies inside them."""
        return []

    def splits_itself(self) -> bool:
        """Whether the declaration picks a part of the data itself (so a SLURM array task
        without --shard is not processing everything)."""
        return any(not getattr(spec, "keeps_all", True) for spec in self.shard_specs())

    def item_key(self, item: dict[str, Any]) -> str:
        """A stable key for sorting and hash sharding: canonical JSON of the item."""
        return json.dumps(item, sort_keys=True, default=str, separators=(",", ":"))

    def item_source(self) -> ItemSource:
        """The owner of this task's items and outputs (`dispatcher.items`): for a plain
        task, `generate_tasks` keyed by `item_key`, done by `is_executed`."""
        return TaskItems(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt in workers by re-importing the task file, so any start method works.
        cls = type(self)
        if cls.__dispatch_source__ is None or cls.__dispatch_restore__ is None:
            return (_rebuild, (cls, dict(self.__dict__)))
        return (cls.__dispatch_restore__, (*cls.__dispatch_source__, dict(self.__dict__)))


class TorchTask(Task):
    """A task run in batches on a device (kagurazaka's vocabulary): on the `torch` backbone,
    or in-process on `serial` to debug it. `templates/adapters/torch_task.py` reads which
    of these methods a task implements.

    Choose one of each:

    - data: `generate_tasks()` with `load_data(**item)` (the plan drops done items before
      anything is loaded; `load_data` runs in DataLoader workers and returns a dict of
      tensors, which the item's own fields such as paths join), or your own map-style
      `get_dataset()` (items are its indices), or your own `get_dataloader()`.
    - done-check: `is_each_executed(**item)` per item, or `is_executed(batch)` for a batch.
    - compute: `inference(device, batch_size, **batch)` with `postprocess_each(batch_idx,
      batch_size, **row_and_result)` or `postprocess(batch_size, results, **batch)`, or a
      whole `process(device, batch)`.

    With `generate_tasks` the done-check runs in the plan, before the dataset is built, so a
    rerun with nothing left loads neither data nor the model. An own dataset or dataloader
    cannot be filtered before loading: its rows are checked batch by batch after loading,
    and `load_model` is called only once a batch has something left to compute.

    `postprocess_each` receives row `batch_idx` of every batch field (a path string, a
    tensor row), the row of the result (`result=` for a tensor or list, the result's own
    keys for a dict), and the item's staged outputs; it runs in a postprocessing thread,
    overlapped with the next batch's compute.
    """

    def load_model(self, device: Any) -> None:
        """Load the model onto `device`; called once, and only when something is left to run."""

    def get_dataset(self) -> Any:
        """Optional: your own map-style Dataset whose rows are dicts (items are its indices)."""
        raise NotImplementedError

    def get_dataloader(self) -> Any:
        """Optional: your own DataLoader yielding dict batches (the backbone's options then do not apply)."""
        raise NotImplementedError

    def load_data(self, **item: Any) -> dict[str, Any]:
        """Load one item in a DataLoader worker; returns a dict of tensors and fields.

        The batch row is the item's own fields updated with this dict, so a path such as
        a template's `input` reaches `inference(**batch)` and `postprocess_each` as well.
        """
        return {}

    def is_each_executed(self, **item: Any) -> bool:
        """Whether this item's outputs already exist (it is then skipped)."""
        return False

    def inference(self, device: Any, batch_size: int, **batch: Any) -> Any:
        """Compute a batch on `device` (under torch.inference_mode); returns a tensor, list or dict."""
        raise NotImplementedError

    def postprocess_each(
        self, batch_idx: int, batch_size: int, **input_batch_and_result: Any
    ) -> None:
        """Write one item's result; a failure here fails that item only."""
        raise NotImplementedError

    def postprocess(self, batch_size: int, results: Any, **batch: Any) -> None:
        """Write a whole batch's results; a failure here fails the batch's items."""
        raise NotImplementedError

    def row_key(self, row: dict[str, Any]) -> str | None:
        """A name for a row of an own dataloader's batch, used in failure messages."""
        for name in ("key", "input", "path", "name", "id"):
            value = row.get(name)
            if isinstance(value, (str, int)):
                return str(value)
        return None

    def item_problems(self, item: dict[str, Any]) -> list[str]:
        """Why `load_data(**item)` cannot take the first item `generate_tasks` listed."""
        if type(self).load_data is TorchTask.load_data:
            return []  # the default takes anything; the fields reach inference(**batch)
        return call_problems(
            f"{type(self).__name__}.load_data", self.load_data, list(item), "its items pass"
        )
