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
from collections.abc import Callable, Iterator
from typing import Any

from dispatcher.errors import MalformedInput
from templates.row_ranges import RowRange, first_line_number, learn_line_number, read_lines

_ENCODER = json.JSONEncoder(ensure_ascii=False)


class NoRowReturned(TypeError):
    """`process` of a packed row task returned neither a dict nor None."""


def rows_of(path: str, part: RowRange | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of every JSON object row of the file, or of its range."""
    if part is None:
        part = RowRange("", 0, 1, 0, _size(path))
    line = first_line_number(path, part)
    for raw in read_lines(path, part):
        if raw.strip():
            try:
                row = json.loads(raw)
            except ValueError as exc:
                raise MalformedInput(f"{path}:{line}: not a JSON row: {exc}") from None
            if not isinstance(row, dict):
                raise MalformedInput(f"{path}:{line}: expected a JSON object, got {row!r:.60}")
            yield line, row
        line += 1
    learn_line_number(path, part.end, line)


def _size(path: str) -> int:
    import os

    return os.path.getsize(path)


def pack_rows(
    process: Callable[..., Any],
    kwargs: dict[str, Any],
    output: str,
    fmt: str,
    compression: str | None,
) -> None:
    """Every row of the item through `process` into the part file `output`."""
    path, part = kwargs["input"], kwargs.get("range")
    with part_writer(output, fmt, compression) as write:
        for line, row in rows_of(path, part):
            result = process(input=path, row=row, line=line)
            if result is None:
                continue
            if not isinstance(result, dict):
                raise NoRowReturned(
                    f"process returned a {type(result).__name__} for {path}:{line}: return the "
                    "output row (a dict), or None to leave the row out"
                )
            write(result)


@contextlib.contextmanager
def part_writer(
    output: str, fmt: str, compression: str | None
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function that writes one row to the part `output`, in order; closed at the end."""
    if fmt == "parquet":
        rows: list[dict[str, Any]] = []
        yield rows.append
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), output)
        return
    with open(output, "wb") as raw, _compressed(raw, output, compression) as out:
        encode = _ENCODER.encode

        def write(row: dict[str, Any]) -> None:
            out.write(encode(row).encode("utf-8") + b"\n")

        yield write


@contextlib.contextmanager
def _compressed(raw: Any, output: str, compression: str | None) -> Iterator[Any]:
    if compression is None:
        yield raw
    elif compression == "gzip":
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            yield out
    else:
        import pyarrow as pa

        with pa.CompressedOutputStream(raw, "zstd") as out:
            yield out
