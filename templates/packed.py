"""Packed outputs: the rows a row task returns for one item, written into one part file.

An item of a task with `OutputPacked` is a file of JSON rows, or a row range of one
(`--rows-per-item`). Its rows are read here, each goes through `process(input, row,
line)`, and what it returns is written in order into the item's staged part: JSONL
(gzip through the standard library, zstd through pyarrow's streams) or Parquet (the
item's rows as one table; memory is bounded by the item). The part is committed by the
template item source, whole, when the item succeeded.

A gzip part is written with no name and no time in its header, so the same rows make the
same bytes on every run.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from templates.row_ranges import (
    RowRange,
    first_line_number,
    json_row,
    learn_line_number,
    read_lines,
)

_ENCODER = json.JSONEncoder(ensure_ascii=False)


class NoRowReturned(TypeError):
    """`process` of a packed row task returned neither a dict nor None."""


def rows_of(path: str, part: RowRange | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of every JSON object row of the file, or of its range."""
    if part is None:
        part = RowRange("", 0, 1, 0, os.path.getsize(path))
    line = first_line_number(path, part)
    for raw in read_lines(path, part):
        if raw.strip():
            yield line, json_row(raw, f"{path}:{line}")
        line += 1
    learn_line_number(path, part.end, line)


def pack_rows(process: Callable[..., Any], kwargs: dict[str, Any], rows: PartWriter) -> None:
    """Every row of the item through `process` into its part (`rows`, the staged part)."""
    path, part = kwargs["input"], kwargs.get("range")
    for line, row in rows_of(path, part):
        rows.write(process(input=path, row=row, line=line), f"{path}:{line}")


class PartWriter:
    """The rows of one item, written in order into its staged part file; `close` finishes
    the file (a Parquet part is written there, from the rows kept until then)."""

    def __init__(self, path: str, fmt: str, compression: str | None) -> None:
        self.path, self.fmt = path, fmt
        self._rows: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self._out: Any = None
        if fmt != "parquet":
            raw = self._stack.enter_context(open(path, "wb"))  # noqa: SIM115 (closed in close)
            self._out = self._stack.enter_context(_compressed(raw, compression))
        self._encode = _ENCODER.encode

    def write(self, row: Any, where: str = "") -> None:
        """Append one output row; None leaves it out; anything else but a dict fails."""
        if row is None:
            return
        if not isinstance(row, dict):
            at = f" for {where}" if where else ""
            raise NoRowReturned(
                f"process returned a {type(row).__name__}{at}: return the output row (a dict), "
                "or None to leave the row out"
            )
        if self._out is None:
            self._rows.append(row)
        else:
            self._out.write(self._encode(row).encode("utf-8") + b"\n")

    def close(self, keep: bool = True) -> None:
        """Finish the file (`keep`), or only release it (the attempt failed)."""
        self._stack.close()
        if keep and self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self._rows), self.path)
        self._rows = []


@contextlib.contextmanager
def _compressed(raw: Any, compression: str | None) -> Iterator[Any]:
    if compression is None:
        yield raw
    elif compression == "gzip":
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            yield out
    else:
        import pyarrow as pa

        with pa.CompressedOutputStream(raw, "zstd") as out:
            yield out
