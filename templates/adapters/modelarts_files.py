"""DataFrames in and out of a ModelArts mode-1 item: one input file, one output file.

JSONL and CSV become a DataFrame of their rows; Parquet its rows plus the platform's
`file_path` and `file_name` columns; any other file a one-row frame of those two. The
result goes back in the input's format (raw files: `<name>.jsonl` of the rows). pandas and
pyarrow are imported here only, when an item is read or written, and only APIs that
pandas 1.3.5 (the ModelArts base image) already has are used.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dispatcher.errors import MalformedInput

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")
"""Inputs read as tables of rows and written back in the same format."""
RAW_OUTPUT_EXT = ".jsonl"


def file_format(key: str) -> str:
    """`.jsonl`, `.csv`, `.parquet`, or `raw` for any other file (by its name only)."""
    lowered = key.lower()
    for ext in TABLE_FORMATS:
        if lowered.endswith(ext):
            return ext
    return "raw"


def output_name(key: str) -> str:
    """The item's output, relative to the output root: the same path, or `<name>.jsonl`."""
    return key if file_format(key) != "raw" else key + RAW_OUTPUT_EXT


def _jsonl_rows(path: str) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise MalformedInput(f"{path}:{number}: not a JSON row: {exc}") from None
                if not isinstance(row, dict):
                    raise MalformedInput(
                        f"{path}:{number}: expected a JSON object, got {row!r:.60}"
                    )
                rows.append(row)
    except UnicodeDecodeError as exc:  # text is decoded by the block: find its line
        raise MalformedInput(
            f"{path}:{_undecodable_line(path)}: not UTF-8 text: {exc.reason}"
        ) from None
    return rows


def _undecodable_line(path: str) -> int:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def read_frame(path: str, key: str) -> Any:
    """The DataFrame the operator gets for the input file `path` (key `key`)."""
    import pandas as pd

    kind = file_format(key)
    if kind == ".jsonl":
        return pd.DataFrame(_jsonl_rows(path))
    if kind == ".csv":
        if os.path.getsize(path) == 0:
            return pd.DataFrame()
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:  # the bytes, not pandas
            raise MalformedInput(f"{path}: not a CSV table: {_first_line(exc)}") from None
    if kind == ".parquet":
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except pa.ArrowInvalid as exc:  # the bytes are no Parquet (not a missing engine)
            raise MalformedInput(f"{path}: not a Parquet file: {_first_line(exc)}") from None
        frame["file_path"] = path
        frame["file_name"] = key
        return frame
    return pd.DataFrame({"file_path": [path], "file_name": [key]})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_frame(frame: Any, path: str, key: str) -> None:
    """Write the final DataFrame of item `key` to `path` (a staging name) in its format
    (the stage has checked that each class returned a DataFrame)."""
    kind = file_format(key)
    if kind == ".csv":
        frame.to_csv(path, index=False)
    elif kind == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        _write_jsonl(frame, path)


def _write_jsonl(frame: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        if len(frame.columns) and len(frame):
            # pandas' own JSON keeps NaN as null and numpy scalars as numbers.
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            fh.write(text if text.endswith("\n") else text + "\n")
