"""The stage: the one thing every backbone runs, whatever the style of the task.

A backbone sees a run as a stage and the plan's pending items. For a batch of them a
stage can: set up once per worker (with its device, if it uses one), load an item where
data loads (a pool worker, a DataLoader worker), collate loaded rows into a batch,
compute the batch where the model is, and write each item's result inside its staged
outputs, committed item by item; then tear down once. `dispatcher.execution.steps` holds the
functions that drive those steps (`run_batch`, or its three parts for an engine that
places them apart); a backbone calls them and never a task's own methods.

Beside the steps, a stage holds its item source (`source`, `dispatcher.items`): the plan
asks it which items there are and which are done, and the steps commit each item's
outputs through it.

An *adapter* is a `Stage` subclass for one task style (plain and template `Task`s,
`TorchTask`s, operator packages...). The loader asks the adapters, in order, which one
accepts a class (`adapter_for`), so a class that is not a `Task` at all can be run
by an adapter without the loader or any backbone changing. Adapters live above the core
(`templates/adapters/`) or in a third party's package (the `dispatcher.adapters`
entry-point group, asked after the built-ins); the core names the built-ins by import
path, like the engines.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from dispatcher.errors import UsageError
from dispatcher.items import ItemSource
from dispatcher.outputs.lease import work_alone
from dispatcher.task import Task

ENTRY_POINT_GROUP = "dispatcher.adapters"
BUILTIN: tuple[str, ...] = (
    "templates.adapters.torch_task:TorchTaskStage",
    "templates.adapters.task:TaskStage",
    "templates.adapters.modelarts:ModelArtsStage",
    "templates.adapters.clearml:PreprocessStage",
    "templates.adapters.aiges:WrapperStage",
)
"""Asked in this order, each imported only when asked: the first adapter that accepts a
class runs it. A `Task` subclass is accepted by the first two, so a task never imports an
operator adapter, and a user's task that happens to be called `Preprocess` stays a task."""

Row = Any
"""One loaded item, as `load` returns it."""


class ItemRows(list):
    """What `load` returns for an item of a stage that `expands_items`: the item's rows,
    each to be batched like an item's row (with other items' rows, too)."""


Batch = Any
"""Rows collated by `collate` (a list of rows unless the adapter says otherwise)."""


class Stage:
    """One task's work, in the steps every backbone places somewhere.

    Items and outputs (the plan's questions, each item's commit): its `source`. Worker
    side: `setup`, `load`, `collate`, `compute`, `write_row` or `write_rows`, `teardown`.
    A stage is built in the parent and pickled to worker processes with its task and
    source.
    """

    style: ClassVar[str] = "task"
    """The task style, as messages name it."""
    batched: ClassVar[bool] = False
    """Whether `compute` takes several rows at once. A stage that does not is run item by
    item (`execution.run_item`): no collation, no batch, nothing extra per item."""
    uses_device: ClassVar[bool] = False
    """Whether `setup` takes a device (torch tasks): such a stage runs where one is chosen."""
    default_batch_size: ClassVar[int] = 1
    compute_step: ClassVar[str] = "compute"
    """How a failure of `compute` is named in the items' errors."""
    write_step: ClassVar[str] = ""
    """How a failure of `write_rows` is named (empty: by the error alone)."""
    writes_on_device: ClassVar[bool] = False
    """Whether `write_rows` computes as well (a torch `process(device, batch)`): an engine
    then runs it where `compute` runs, not on a writer thread."""
    expands_items: bool = False
    """Whether `load` makes an item into several rows (`ItemRows`: a row range's rows),
    which an engine batches like items (across items, too); each row's value
    (`item_rows`) goes into the item's one staged output (`write_item_row`), committed
    once its last row is written."""
    writes_rows_together: ClassVar[bool] = False
    """Whether one call writes a whole batch (`write_rows`) instead of one row at a time
    (`write_row`): every item of the batch is then claimed before the call."""

    def __init__(self, task: Task, force: bool = False) -> None:
        self.task = task
        self.force = force
        """`--force`: an item completed by another run since the plan is made again."""
        self.source: ItemSource = self.source_of(task)
        """Where the items come from, which are done, where their outputs go."""
        self.alone_roots: tuple[str, ...] = ()
        """The output roots of the run's lease, set before the backbone runs: where a batch
        that the lease lets run alone commits without per-item claims (`work_alone`)."""
        self.run_dir: str | None = None
        """The run's log directory, set before the backbone runs (where a stage may record
        what is not an output: `dispatcher.report.statistics`), so it travels to every worker."""

    # --- which classes this adapter runs --------------------------------------------------

    @classmethod
    def accepts(cls, obj: type) -> bool:
        """Whether this adapter runs the class `obj` (checked in `BUILTIN` order). A plugin
        written when this was named `claims` keeps working: its `claims` is asked."""
        claims = getattr(cls, "claims", None)
        return bool(claims(obj)) if claims is not None else False

    @classmethod
    def task_class(cls, obj: type) -> type[Task]:
        """The `Task` class configured and run for `obj` (itself, for a task class).

        An adapter that builds a `Task` class around a class of another kind (an operator)
        sets `__dispatch_adapter__` on what it builds, so that class comes back to it, and
        returns the same class each time it is asked (workers rebuild tasks by it).
        """
        return obj

    package_layout: ClassVar[str] = ""
    """For an adapter that runs directories (operator packages): what such a directory
    holds, for the message when no adapter accepts one."""

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Whether this adapter runs the directory `path` (an operator package); an older
        plugin's `claims_path` is asked in its place."""
        claims_path = getattr(cls, "claims_path", None)
        return bool(claims_path(path)) if claims_path is not None else False

    @classmethod
    def task_class_for_path(cls, path: str) -> type[Task]:
        """The `Task` class of the directory `path` (the same class each time; marked
        `__dispatch_adapter__`). Malformed packages raise `UsageError`."""
        raise NotImplementedError

    @classmethod
    def install_script(cls, task_cls: type[Task]) -> str | None:
        """A script the task's package installs its dependencies with (run by `--install`)."""
        return None

    @classmethod
    def problems(cls, task_cls: type[Task]) -> list[str]:
        """Why a class this adapter accepts cannot run at all (a missing method), one line each."""
        return []

    @classmethod
    def rows_known_after_load(cls, task_cls: type[Task]) -> bool:
        """Whether rows are known only by loading (an own dataloader or iterable dataset):
        the run is then one plan item, and the plan's done check runs batch by batch."""
        return False

    # --- items and outputs ------------------------------------------------------------------

    def source_of(self, task: Task) -> ItemSource:
        """The item source this stage runs (the task's own, unless the adapter knows better)."""
        return task.item_source()

    def split_rows(self, rows_per_item: int) -> str | None:
        """Make the items ranges of about `rows_per_item` rows of the files they read
        (`--rows-per-item`): the adapter wraps its source in one that cuts files into row
        ranges. Returns why this stage cannot (one line; the run exits 2), else None."""
        return (
            f"--rows-per-item: {type(self.task).__name__} ({self.style}) does not read rows "
            "from files; it applies to ModelArts mode-1 packages, ClearML Preprocess over "
            "JSONL and row tasks with a packed output (docs/rows.md)"
        )

    # --- worker side ---------------------------------------------------------------------

    def work_alone(self, alone: bool) -> None:
        """Commit the next batch without per-item claims (`alone`), or with them: what the
        run's lease said when the batch was sent (`dispatcher.outputs.lease`)."""
        work_alone(self.alone_roots if alone else ())

    def setup(self, device: Any = None) -> None:
        """Once per worker, before its first item."""
        self.task.setup()

    def teardown(self) -> None:
        """Once per worker, after its last item."""
        self.task.teardown()

    def warm_up(self) -> None:
        """Make `compute` ready (load a model), once something is left to compute.

        A failure here ends the run (`execution.StageFailed`): nothing can compute.
        """

    def load(self, key: str, payload: Any) -> Row:
        """An item's row: runs where data loads."""
        return self.source.payload(key, payload)

    def collate(self, rows: list[Row]) -> Batch:
        return rows

    def size(self, batch: Batch) -> int:
        return len(batch)

    def row(self, batch: Batch, i: int) -> Row:
        return batch[i]

    def select(self, batch: Batch, keep: list[int]) -> Batch:
        """The rows `keep` of a batch (after some were found done or failed)."""
        return [batch[i] for i in keep]

    def row_name(self, batch: Batch, i: int) -> str | None:
        """A name for row `i` of an own loader's batch, for failure messages."""
        return None

    def compute(self, batch: Batch, size: int) -> Any:
        """The batch's result, where the model is (None: the work is done in `write_row`)."""
        return None

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        """Write row `i`'s result to its staged `outputs` (committed when this returns)."""
        raise NotImplementedError

    def write_rows(
        self, keys: list[str], batch: Batch, result: Any, outputs: dict[str, list[Any]]
    ) -> None:
        """Write a whole batch's results; `outputs` holds one staged path per row per name."""
        raise NotImplementedError

    def item_rows(self, batch: Batch, result: Any, size: int) -> list[Any]:
        """For a stage that `expands_items`: each row's value to write, from a computed
        batch of rows (runs where `write_row` would)."""
        raise NotImplementedError

    def write_item_row(self, outputs: dict[str, Any], value: Any) -> None:
        """For a stage that `expands_items`: write one row's value into its item's staged
        outputs (the same outputs for each of the item's rows, in order)."""
        raise NotImplementedError

    def own_loader(self, loader_for: Callable[[Any, Callable[..., Any]], Iterable[Any]]) -> Any:
        """What yields the batches of a `source.whole_run` (an iterable; a DataLoader for a torch
        task). `loader_for(dataset, collate)` is the backbone's way to load a dataset the
        task returns, with its own settings."""
        raise NotImplementedError


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


@functools.cache
def _load(spec: str) -> type[Stage]:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _builtin() -> Iterator[type[Stage]]:
    """The built-in adapters in order, each imported on first use."""
    for spec in BUILTIN:
        yield _load(spec)


@functools.cache
def _plugins() -> tuple[type[Stage], ...]:
    found: list[type[Stage]] = []
    for ep in _entry_points():
        try:
            cls = ep.load()
        except Exception as exc:
            raise UsageError(
                f"adapter '{ep.name}' failed to load: {type(exc).__name__}: {exc}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise UsageError(f"adapter '{ep.name}' ({ep.value}) is not a dispatcher.stage.Stage")
        found.append(cls)
    return tuple(found)


def _adapters() -> Iterator[type[Stage]]:
    """Every adapter in the order they are asked: the built-ins first, then installed
    plugins, whose entry points are scanned only once no built-in accepted the thing (so
    a task class or a package a built-in runs never pays for the scan)."""
    yield from _builtin()
    yield from _plugins()


def adapter_for(obj: type) -> type[Stage] | None:
    """The adapter that runs the class `obj`, or None when no adapter accepts it.

    A class an adapter built names it (`__dispatch_adapter__`). Otherwise the built-ins
    (they accept only `Task` subclasses), then installed plugins' adapters.
    """
    built_by = getattr(obj, "__dispatch_adapter__", None)
    if isinstance(built_by, type) and issubclass(built_by, Stage):
        return built_by
    return next((a for a in _adapters() if a.accepts(obj)), None)


def adapter_for_path(path: str) -> type[Stage] | None:
    """The adapter that runs the directory `path`, or None."""
    return next((a for a in _adapters() if a.accepts_path(path)), None)


def package_layouts() -> list[str]:
    """What each directory-running adapter expects of a package, for one error line."""
    return [a.package_layout for a in _adapters() if a.package_layout]


def stage_for(task: Task, force: bool = False) -> Stage:
    """The stage of a configured task (its class's adapter around it)."""
    adapter = adapter_for(type(task))
    if adapter is None:
        raise UsageError(f"no adapter runs {type(task).__name__}: it is not a task class")
    return adapter(task, force=force)
