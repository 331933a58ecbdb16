"""`TorchTask`s: which of kagurazaka's methods a task implements, as one stage.

A torch task picks one of each (see `dispatcher.task.TorchTask`): a data source
(`generate_tasks` + `load_data`, an own `get_dataset`, an own `get_dataloader`), a done
check (`is_each_executed`, `is_executed(batch)`) and a compute mode (`inference` with
`postprocess_each` or `postprocess`, or a whole `process(device, batch)`). The choice is
read here, once per class, and becomes the stage's steps and its item source
(`torch_items.py`, or a template's own); no backbone knows it.

Torch is imported only when a batch is collated or computed, never to accept a class.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dispatcher.execution.signals import ControlFlow
from dispatcher.execution.steps import StageFailed, error_line
from dispatcher.items import ItemSource, TaskItems
from dispatcher.stage import Batch, ItemRows, Row, Stage
from dispatcher.task import Task, TorchTask
from templates.adapters.torch_items import ListedItems, OwnRows
from templates.parts import cut_parts, packed_parts


def overrides(task_cls: type, name: str, base: type = TorchTask) -> bool:
    """Whether `task_cls` implements `name` itself rather than inheriting `base`'s."""
    return getattr(task_cls, name, None) is not getattr(base, name, None)


def data_source(task_cls: type[Task]) -> str:
    """`items` (generate_tasks / a template), `dataset` (own get_dataset) or `dataloader`."""
    if overrides(task_cls, "get_dataloader"):
        return "dataloader"
    lists_items = overrides(task_cls, "generate_tasks") or overrides(task_cls, "item_source")
    if overrides(task_cls, "get_dataset") and not lists_items:
        return "dataset"
    return "items"


def compute_mode(task_cls: type[Task]) -> str | None:
    """`process`, `postprocess` or `postprocess_each`; None when the task lacks one."""
    if overrides(task_cls, "process"):
        return "process"
    if not overrides(task_cls, "inference"):
        return None
    if overrides(task_cls, "postprocess"):
        return "postprocess"
    if overrides(task_cls, "postprocess_each"):
        return "postprocess_each"
    return None


def done_check(task_cls: type[Task]) -> str | None:
    """`batch` (is_executed(batch)), `each` (is_each_executed) or None.

    A task that implements `is_executed(batch)` gets it asked, as in kagurazaka where its
    default answers from `is_each_executed`.
    """
    if overrides(task_cls, "is_executed"):
        return "batch"
    if overrides(task_cls, "is_each_executed"):
        return "each"
    return None


def _batches() -> Any:
    from dispatcher.execution import batches

    return batches


class TorchTaskStage(Stage):
    """A torch task: rows load where data loads, batches compute on the device under
    `torch.inference_mode()`, results are written per row or per batch."""

    style = "torch task"
    batched = True
    uses_device = True
    default_batch_size = 16
    compute_step = "inference"

    def __init__(self, task: Task, force: bool = False) -> None:
        cls = type(task)
        self.data = data_source(cls)
        self.check = done_check(cls)
        self.mode = compute_mode(cls)
        super().__init__(task, force)
        self.device: Any = None
        self.model = "absent"  # absent | loaded | failed
        self.source, self.packed = packed_parts(self.source)
        """A packed output (`OutputPacked`): an item is a file or a row range of rows, each
        loaded in a DataLoader worker, batched across items, its value packed into the
        item's part."""
        self.expands_items = self.packed is not None

    def split_rows(self, rows_per_item: int) -> str | None:
        """A packed output: items become row ranges, a part each (`PartItems`)."""
        if cut_parts(self.source, rows_per_item):
            return None
        return super().split_rows(rows_per_item)

    # --- the class ------------------------------------------------------------------------

    @classmethod
    def accepts(cls, obj: type) -> bool:
        return isinstance(obj, type) and issubclass(obj, TorchTask)

    @classmethod
    def problems(cls, task_cls: type[Task]) -> list[str]:
        if compute_mode(task_cls) is None:
            return [
                f"{task_cls.__name__} implements neither inference() with postprocess_each() "
                "or postprocess(), nor process(device, batch)"
            ]
        return []

    @classmethod
    def rows_known_after_load(cls, task_cls: type[Task]) -> bool:
        return data_source(task_cls) == "dataloader"

    @property
    def writes_rows_together(self) -> bool:  # type: ignore[override]
        return self.mode in ("process", "postprocess")

    @property
    def writes_on_device(self) -> bool:  # type: ignore[override]
        return self.mode == "process"

    # --- items ----------------------------------------------------------------------------

    def source_of(self, task: Task) -> ItemSource:
        """Own data: its rows. Listed items: a template's own source, or the items of
        `generate_tasks` asked with the task's own done check."""
        if self.data != "items":
            return OwnRows(task, self.data, self.check)
        source = task.item_source()
        if isinstance(source, TaskItems):
            return ListedItems(task, self.check)
        return source

    # --- worker side -----------------------------------------------------------------------

    def setup(self, device: Any = None) -> None:
        self.device = device
        self.task.setup()

    def warm_up(self) -> None:
        if self.model == "absent":
            try:
                self.task.load_model(self.device)  # type: ignore[attr-defined]
            except ControlFlow:
                raise
            except BaseException as exc:  # sys.exit() too: nothing can run without the model
                self.model = "failed"
                raise StageFailed(
                    f"load_model failed: {error_line(exc)}", traceback.format_exc()
                ) from None
            self.model = "loaded"
        elif self.model == "failed":
            raise StageFailed("load_model failed earlier")

    def load(self, key: str, payload: Any) -> Row:
        fields = self.source.payload(key, payload)
        if self.data == "dataset":
            return fields  # a row of the task's own dataset
        if self.packed is not None:
            return self._item_rows(fields)
        return self._loaded(fields)

    def _loaded(self, fields: dict[str, Any]) -> dict[str, Any]:
        loaded = self.task.load_data(**fields)  # type: ignore[attr-defined]
        if not isinstance(loaded, Mapping):
            raise TypeError(f"load_data must return a dict, got {type(loaded).__name__}")
        # The item's own fields (a template's `input` path) ride along unless load_data
        # returned a field of the same name.
        return {**fields, **loaded}

    def _item_rows(self, fields: dict[str, Any]) -> ItemRows:
        """Every row of a packed item (a file, or a row range of one), loaded."""
        from templates.packed import rows_of

        path, load_data = fields["input"], self.task.load_data  # type: ignore[attr-defined]
        rows = ItemRows()
        for line, row in rows_of(path, fields.get("range")):
            loaded = load_data(input=path, row=row, line=line)
            if not isinstance(loaded, Mapping):
                raise TypeError(f"load_data must return a dict, got {type(loaded).__name__}")
            # Rows of several files meet in one batch: only `input` and `line` ride along
            # (a raw row's fields differ from file to file; load_data returns what it needs).
            rows.append({"input": path, "line": line, **loaded})
        return rows

    def collate(self, rows: list[Row]) -> Batch:
        if rows and isinstance(rows[0], ItemRows):
            return list(rows)  # items of rows, as loaded: the engine batches their rows
        return _batches().collate_rows(rows)

    def size(self, batch: Batch) -> int:
        if not isinstance(batch, Mapping):
            raise TypeError(f"the dataloader must yield dict batches, got {type(batch).__name__}")
        return _batches().batch_length(batch)

    def row(self, batch: Batch, i: int) -> Row:
        return _batches().row_of(batch, i)

    def select(self, batch: Batch, keep: list[int]) -> Batch:
        return _batches().select_rows(batch, keep)

    def row_name(self, batch: Batch, i: int) -> str | None:
        return self.task.row_key(self.row(batch, i))  # type: ignore[attr-defined]

    def _on_device(self, batch: Batch) -> Batch:
        """The batch's tensors on the device (non-blocking from pinned memory); cpu: as is."""
        device = self.device
        if device is None or getattr(device, "type", str(device)) == "cpu":
            return batch
        # Non-blocking copies from pinned memory where the vendor's streams order them.
        return _batches().to_device(batch, device, device.type in ("cuda", "npu"))

    def compute(self, batch: Batch, size: int) -> Any:
        if self.mode == "process" and self.packed is not None:
            import torch

            with torch.inference_mode():  # it returns the batch's rows, to be packed
                return self.task.process(self.device, self._on_device(batch))  # type: ignore[attr-defined]
        if self.mode == "process":
            return None  # process(device, batch) computes and writes: see write_rows
        import torch

        task: Any = self.task
        on_device = self._on_device(batch)
        with torch.inference_mode():
            return task.inference(self.device, size, **on_device)

    def _each_arguments(self, row: Row, result: Any, i: int) -> dict[str, Any]:
        """`postprocess_each`'s keyword arguments for row `i`: its fields and its share of
        the batch's result (spread when a dict, else as `result`)."""
        kwargs = dict(row)
        result_row = _batches().row_of(result, i)
        if isinstance(result, Mapping):
            kwargs.update(result_row)
        else:
            kwargs["result"] = result_row
        return kwargs

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        kwargs = {**self._each_arguments(row, result, i), **outputs}
        self.task.postprocess_each(i, size, **kwargs)  # type: ignore[attr-defined]

    def item_rows(self, batch: Batch, result: Any, size: int) -> list[Any]:
        """The output rows of a packed batch: what `postprocess_each` returns for each row,
        `postprocess` for the batch, or `process(device, batch)` returned."""
        task: Any = self.task
        if self.mode == "postprocess_each":
            return [
                task.postprocess_each(
                    i, size, **self._each_arguments(self.row(batch, i), result, i)
                )
                for i in range(size)
            ]
        values = task.postprocess(size, result, **batch) if self.mode == "postprocess" else result
        if not isinstance(values, (list, tuple)) or len(values) != size:
            step = "postprocess" if self.mode == "postprocess" else "process"
            raise TypeError(
                f"{step} must return a list of {size} output rows for a packed output "
                f"(a dict, or None to leave a row out), got {type(values).__name__}"
            )
        return list(values)

    def write_item_row(self, outputs: dict[str, Any], value: Any) -> None:
        outputs["rows"].write(value)

    def write_rows(
        self, keys: list[str], batch: Batch, result: Any, outputs: dict[str, list[Any]]
    ) -> None:
        task: Any = self.task
        if self.mode == "process":
            import torch

            on_device = self._on_device(batch)
            with torch.inference_mode():
                task.process(self.device, {**on_device, **outputs})
            return
        task.postprocess(len(keys), result, **{**batch, **outputs})

    def own_loader(self, loader_for: Callable[[Any, Callable[..., Any]], Iterable[Any]]) -> Any:
        """The task's own dataloader, or `loader_for` over its iterable dataset."""
        if self.data == "dataloader":
            return self.task.get_dataloader()  # type: ignore[attr-defined]
        own: Any = self.source
        return loader_for(own.take_dataset(), self.collate)
