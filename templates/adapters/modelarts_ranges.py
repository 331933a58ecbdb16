"""DataFrames of one row range of a file (`--rows-per-item`), and its part written back.

A range's frame is what the whole file's frame holds for those rows: JSONL rows parsed
the same way, a CSV range read under the file's header, a Parquet range's row groups
with the platform's `file_path` and `file_name` columns. Its part is written in the
file's format so that the parts, concatenated in order, are the file a whole run writes:
a CSV part after the first has no header.
"""

from __future__ import annotations

import io
from typing import Any

from dispatcher.errors import MalformedInput
from templates.adapters.modelarts_files import first_line, rows_frame, write_frame
from templates.row_ranges import RowRange, file_format, first_line_number, read_bytes, read_lines


def read_range_frame(path: str, part: RowRange) -> Any:
    """The DataFrame the operator gets for range `part` of the file `path`."""
    import pandas as pd

    kind = file_format(part.file)
    if kind == ".jsonl":
        return _jsonl_frame(path, part)
    if kind == ".csv":
        try:
            return pd.read_csv(io.BytesIO(read_bytes(path, part, header=True)))
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise MalformedInput(
                f"{path}: not a CSV table (row range {part.index + 1} of {part.count}): "
                f"{first_line(exc)}"
            ) from None
    from templates.row_ranges import read_row_groups

    frame = read_row_groups(path, part).to_pandas()  # type: ignore[attr-defined]
    frame["file_path"] = path
    frame["file_name"] = part.file
    return frame


def _jsonl_frame(path: str, part: RowRange) -> Any:
    """The range's rows as the whole file's frame builds them; a malformed line is named
    by its number in the file, which is counted only then."""
    try:
        return rows_frame(read_lines(path, part), path, 1)
    except MalformedInput as exc:
        number, colon, rest = str(exc).removeprefix(f"{path}:").partition(":")
        if not colon or not number.isdigit():
            raise
        line = first_line_number(path, part) + int(number) - 1
        raise MalformedInput(f"{path}:{line}:{rest}") from None


def write_range_frame(frame: Any, path: str, part: RowRange) -> None:
    """Write a range's final DataFrame to `path` as its part of the file's output."""
    if file_format(part.file) == ".csv" and part.index > 0:
        frame.to_csv(path, index=False, header=False)
        return
    write_frame(frame, path, part.file)
