"""ClearML-serving `Preprocess` classes, run over JSONL files as the serving engine runs them.

As clearml-serving 1.3.5 does (`BasePreprocessRequest`, `_process_request`): one instance
per worker, `Preprocess()`; `load(model)` once when it exists; per request a fresh
`state = {}` and `preprocess(body, state, fn)` -> `process(data, state, fn)` ->
`postprocess(data, state, fn)`, positional, each awaited when it is a coroutine. Here a
request is one row of a JSONL file and a work item is the file: its output is one JSONL
row per input row, in order, at the same relative path under the output root, committed
atomically. `fn` is the statistics collector (`dict.update` of the request's values, as the
engine's); the values are aggregated per key into the run's summary and `run.json`.

A missing method is the identity. A row that raises fails its file, naming the line; a
line that is not JSON is malformed input (`MalformedInput`: the run exits 2 naming it).
`--mixin skip_failed_rows=true` instead leaves such rows out of the output and lists each
one in the run directory (`skipped_rows.jsonl`).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import traceback
from collections.abc import Iterator
from typing import Any

from dispatcher.config.placeholders import Placeholder
from dispatcher.errors import MalformedInput
from dispatcher.execution.steps import error_line
from dispatcher.report import statistics
from dispatcher.stage import Row
from dispatcher.task import Task
from templates.adapters.task import TaskStage
from templates.hooks import template_class
from templates.input_modes import InputJsonlFiles
from templates.output_modes import OutputSameFormat
from templates.parts import joined_ranges
from templates.row_ranges import RowRange, first_line_number, read_lines

METHODS = ("load", "preprocess", "process", "postprocess")
SKIPPED = "skipped_rows.jsonl"
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class RowFailed(Exception):
    """A row of an input file raised: its file's item fails, naming the line."""


def _no_send_request(self: Any, endpoint: str, version: str | None = None, data: Any = None) -> Any:
    raise RuntimeError(
        f"send_request({endpoint!r}) is not available in batch mode: there is no serving "
        "endpoint to send to; call the other model directly in process()"
    )


class _Operator:
    """One worker's `Preprocess` instance and how each of its steps is called."""

    def __init__(self, cls: type, model: str | None) -> None:
        instance = cls()
        # The engine replaces send_request on the class; on the instance leaves it alone.
        instance.send_request = _no_send_request.__get__(instance)
        self.instance = instance
        self.loop: Any = None
        steps = [getattr(instance, name, None) for name in METHODS[1:]]
        # Decided once per method, not per row: a coroutine function's result is awaited.
        self.steps = [
            self._awaiting(step) if inspect.iscoroutinefunction(step) else step
            for step in steps
            if step is not None
        ]
        load = getattr(instance, "load", None)
        if callable(load):
            result = load(model)
            if inspect.isawaitable(result):
                self._settle(result)

    def _settle(self, value: Any) -> Any:
        if self.loop is None:
            import asyncio

            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(value)

    def _awaiting(self, step: Any) -> Any:
        def run(data: Any, state: dict[str, Any], collect: Any) -> Any:
            return self._settle(step(data, state, collect))

        return run

    def __call__(self, body: Any, collect: Any) -> Any:
        state: dict[str, Any] = {}
        data = body
        for step in self.steps:
            data = step(data, state, collect)
        return data

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


class PreprocessTask(Task):
    """The planned side of a `Preprocess` class: JSONL files in, JSONL files out."""

    operator_class: type
    mixin = {
        "model": Placeholder(
            str, default=None, help="model file passed to Preprocess.load (None when unset)"
        ),
        "skip_failed_rows": Placeholder(
            bool,
            default=False,
            help="leave rows that raise out of the output, listed in the run's log directory, "
            "instead of failing their file",
        ),
    }

    def setup(self) -> None:
        model = self.mixin.model
        self._operator = _Operator(self.operator_class, os.path.abspath(model) if model else None)

    def teardown(self) -> None:
        operator = self.__dict__.pop("_operator", None)
        if operator is not None:
            operator.close()

    def process(self, input: str, output: str) -> None:
        self.run_file(input, output, None)

    def run_file(
        self, input: str, output: str, run_dir: str | None, part: RowRange | None = None
    ) -> statistics.Statistics:
        """Every row of `input` (or of its row range `part`) through the operator into
        `output`; the rows' statistics."""
        operator, skip = self._operator, self.mixin.skip_failed_rows
        stats = statistics.Statistics()
        decode, encode = _DECODER.decode, _ENCODER.encode
        lines = _Lines(input, part)
        with open(output, "w", encoding="utf-8") as dst:
            for number, line in enumerate(lines):
                if not line.strip():
                    continue
                custom: dict[str, Any] = {}
                try:
                    try:
                        body = decode(line)
                    except ValueError as exc:  # the data is at fault, not the operator
                        where = lines.where(number)
                        raise MalformedInput(f"{where}: not a JSON row: {exc}") from None
                    text = encode(operator(body, custom.update))
                except Exception as exc:
                    if skip:
                        _record_skipped(run_dir, lines.where(number), exc)
                        stats.add({"_skipped_rows": 1})
                        continue
                    if isinstance(exc, MalformedInput):
                        raise
                    raise RowFailed(f"{lines.where(number)}: {error_line(exc)}") from exc
                dst.write(text)
                dst.write("\n")
                if custom:
                    stats.add(custom)
        return stats


class _Lines:
    """The text lines of a JSONL file, or of one row range of it, and `file:LINE` for
    each (a range's first line number is counted only when a line is named)."""

    def __init__(self, path: str, part: RowRange | None) -> None:
        self.path, self.part = path, part
        self._first: int | None = 1 if part is None else None

    def __iter__(self) -> Iterator[str]:
        if self.part is None:
            with open(self.path, encoding="utf-8") as src:
                yield from src
            return
        for raw in read_lines(self.path, self.part):
            yield raw.decode("utf-8")

    def where(self, number: int) -> str:
        if self._first is None:
            self._first = first_line_number(self.path, self.part)  # type: ignore[arg-type]
        return f"{self.path}:{self._first + number}"


def _record_skipped(run_dir: str | None, where: str, exc: BaseException) -> None:
    if run_dir is None:
        return
    line = json.dumps(
        {
            "row": where,
            "error": error_line(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
    ).encode()
    fd = os.open(os.path.join(run_dir, SKIPPED), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


class PreprocessStage(TaskStage):
    """Runs a ClearML-serving `Preprocess` class over JSONL files, a file per item."""

    style = "ClearML Preprocess"

    @classmethod
    def accepts(cls, obj: type) -> bool:
        return (
            isinstance(obj, type)
            and obj.__name__ == "Preprocess"
            and not issubclass(obj, Task)
            and any(callable(getattr(obj, name, None)) for name in METHODS)
        )

    @classmethod
    def task_class(cls, obj: type) -> type[Task]:
        return _task_class(obj)

    def split_rows(self, rows_per_item: int) -> str | None:
        """Row ranges of the JSONL files: each range's rows go through the operator into
        a part, and a file's output is joined from its parts (`templates/range_items.py`)."""
        cut = joined_ranges(self.task, self.source, rows_per_item)
        if isinstance(cut, str):
            return f"--rows-per-item: {type(self.task).__name__} {cut}"
        self.source = cut
        return None

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        task: Any = self.task
        stats = task.run_file(row["input"], outputs["output"], self.run_dir, row.get("range"))
        statistics.record(self.run_dir, stats)


@functools.cache
def _task_class(operator: type) -> type[Task]:
    built: Any = template_class(PreprocessTask, operator, InputJsonlFiles(), OutputSameFormat())
    built.operator_class = operator
    built.__dispatch_adapter__ = PreprocessStage
    return built
