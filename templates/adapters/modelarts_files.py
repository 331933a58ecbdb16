"""DataFrames in and out of a ModelArts mode-1 item: one input file, one output file.

JSONL and CSV become a DataFrame of their rows; Parquet its rows plus the platform's
`file_path` and `file_name` columns; any other file a one-row frame of those two. The
result goes back in the input's format (raw files: `<name>.jsonl` of the rows). pandas and
pyarrow are imported here only, when an item is read or written, and only APIs that
pandas 1.3.5 (the ModelArts base image) already has are used.

A mode-1 file is one DataFrame, so all of its rows are in memory at once; the JSONL path is
shaped so that the frame is most of what that costs. A Python dict per row costs several
times the row's bytes (a ~200-byte row: a ~200-byte dict besides its boxed values), and
`pd.DataFrame` of such a list holds the dicts, a 2-D object array of every cell and the
finished columns together: 7 to 9 times the file at the peak. So the rows are gathered into
one list of values per column, each column is built and its list released in turn (text a
slice of rows at a time), and the output is written a slice of rows at a time rather than
as one string of the whole file: about 2.5 times the file at the peak, the interpreter and
pandas included (`bench/bench_rows_memory.py`). The frame is still the one the list of
dicts gives, dtypes included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from dispatcher.errors import MalformedInput
from templates.row_ranges import json_row

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")
"""Inputs read as tables of rows and written back in the same format."""
RAW_OUTPUT_EXT = ".jsonl"
WRITE_ROWS = 20_000
"""Rows per `to_json` call when writing JSONL: a few MB of text at a time."""


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


def rows_frame(lines: Iterable[bytes], where: str, first_line: int = 1) -> Any:
    """The DataFrame of JSONL `lines` (raw bytes, each ending in `\\n` but maybe the last),
    equal to `pd.DataFrame(list of the rows' dicts)`; malformed input raises
    `MalformedInput("{where}:{line}: ...")`, the first of `lines` being line `first_line`.

    The rows are gathered into one list of values per column, never a dict per row held
    for all rows (see the module docstring); each column is then inferred from all of its
    values by the conversion pandas applies to a list of dicts (`_cells_frame`), so no
    chunk of rows decides a dtype that later rows contradict.
    """
    columns, count = _columns(_rows(lines, where, first_line))
    return _frame(columns, count)


def _rows(lines: Iterable[bytes], where: str, first_line: int) -> Iterator[dict[str, Any]]:
    for number, text in _texts(lines, where, first_line):
        if text.strip():
            yield json_row(text, f"{where}:{number}")


def _texts(lines: Iterable[bytes], where: str, first_line: int) -> Iterator[tuple[int, str]]:
    """(line number, text) of the lines as a file opened as UTF-8 text yields them: a lone
    `\\r` ends a line too and line ends read as `\\n` (JSON errors quote positions in that
    text); an undecodable line is reported by its number among `\\n`-ended lines."""
    number = first_line
    for raw_number, line in enumerate(lines, first_line):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInput(f"{where}:{raw_number}: not UTF-8 text: {exc.reason}") from None
        for piece in _universal_lines(text):
            yield number, piece
            number += 1


def _universal_lines(text: str) -> list[str]:
    """`text` (one of `lines`) as text mode splits it: at `\\r\\n`, `\\r` and `\\n`, each
    read as `\\n`."""
    if "\r" not in text:
        return [text]
    pieces = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ended = [piece + "\n" for piece in pieces[:-1]]
    return ended + [pieces[-1]] if pieces[-1] else ended


def _columns(rows: Iterable[dict[str, Any]]) -> tuple[dict[str, list[Any]], int]:
    """One list per key, in order of first appearance, NaN where a row lacks the key (as
    pandas fills a list of dicts); and the number of rows."""
    columns: dict[str, list[Any]] = {}
    count = 0
    for row in rows:
        for key, value in row.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [_MISSING] * count
            column.append(value)
        count += 1
        if len(row) != len(columns):  # the row lacks some keys: pad their columns
            for column in columns.values():
                if len(column) < count:
                    column.append(_MISSING)
    return columns, count


_MISSING = float("nan")


def _frame(columns: dict[str, list[Any]], count: int) -> Any:
    """The frame of the column lists, each list released once its column is built."""
    import pandas as pd

    if not columns:  # no rows, or rows of `{}` only
        return pd.DataFrame([{}] * count)
    parts = [_column(pd, name, columns.pop(name)) for name in list(columns)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)


def _column(pd: Any, name: str, values: list[Any]) -> Any:
    """Column `name` as a one-column frame of the dtype pandas infers from all of `values`.

    pandas' string dtype (what pandas 3 infers for text) costs about twice the text while
    its array is built, on top of the values' lists; so text is converted a slice of rows
    at a time, each slice's values released once converted. That is exact only for text:
    a slice is inferred as strings when each of its values is a string or missing, so when
    every slice is, the whole column is. A slice of any other dtype puts the released
    values back and sends the whole column through at once, as only the whole decides
    between int64 and float64 and the like."""
    if len(values) > SLICE_ROWS and _may_be_text(pd, values):
        slices = _text_slices(pd, name, values)
        if slices is not None:
            return pd.concat(slices, ignore_index=True)
    return _cells_frame(pd, name, values)


def _may_be_text(pd: Any, values: list[Any]) -> bool:
    """Whether slicing can pay: pandas infers a string dtype for text (pandas 3 does, 1.x
    and 2.x keep objects) and the first slice holds a string. Only saves a wasted slice."""
    if not isinstance(pd.Series(["a"]).dtype, pd.StringDtype):
        return False
    return any(type(value) is str for value in values[:SLICE_ROWS])


SLICE_ROWS = 65_536
"""Rows of a text column converted at a time (some MB of text)."""


def _text_slices(pd: Any, name: str, values: list[Any]) -> list[Any] | None:
    """The frames of `values` a slice at a time if all are of one string dtype, else None
    with `values` as they were."""
    slices: list[Any] = []
    others: list[tuple[int, Any]] = []  # (position, value) of the released non-strings
    for start in range(0, len(values), SLICE_ROWS):
        stop = min(start + SLICE_ROWS, len(values))
        part = _cells_frame(pd, name, values[start:stop])
        dtype = part.dtypes.iloc[0]
        if not isinstance(dtype, pd.StringDtype) or (slices and dtype != slices[0].dtypes.iloc[0]):
            _put_back(values, slices, others)
            return None
        others.extend((i, values[i]) for i in range(start, stop) if type(values[i]) is not str)
        values[start:stop] = [None] * (stop - start)
        slices.append(part)
    return slices


def _put_back(values: list[Any], slices: list[Any], others: list[tuple[int, Any]]) -> None:
    """Refill the released values from the slices' strings and the saved missing values."""
    start = 0
    for part in slices:
        texts = part.iloc[:, 0].tolist()
        values[start : start + len(texts)] = texts
        start += len(texts)
    for i, value in others:
        values[i] = value


def _cells_frame(pd: Any, name: str, values: list[Any]) -> Any:
    """`pd.DataFrame(list of 1-tuples, columns=[name])`: pandas turns a list of tuples and
    a list of dicts into the same 2-D object array and infers each of its columns on its
    own, so the dtype is the one the list of dicts gets. The tuples cost less than the dicts
    of all columns would, and only one column's exist at a time."""
    return pd.DataFrame([(value,) for value in values], columns=[name])


def read_frame(path: str, key: str) -> Any:
    """The DataFrame the operator gets for the input file `path` (key `key`)."""
    import pandas as pd

    kind = file_format(key)
    if kind == ".jsonl":
        with open(path, "rb") as fh:
            return rows_frame(fh, path)
    if kind == ".csv":
        if os.path.getsize(path) == 0:
            return pd.DataFrame()
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:  # the bytes, not pandas
            raise MalformedInput(f"{path}: not a CSV table: {first_line(exc)}") from None
    if kind == ".parquet":
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except pa.ArrowInvalid as exc:  # the bytes are no Parquet (not a missing engine)
            raise MalformedInput(f"{path}: not a Parquet file: {first_line(exc)}") from None
        frame["file_path"] = path
        frame["file_name"] = key
        return frame
    return pd.DataFrame({"file_path": [path], "file_name": [key]})


def first_line(exc: BaseException) -> str:
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
    """The frame's rows as JSONL, `WRITE_ROWS` rows at a time: each row's JSON depends on
    that row only, so the bytes are those of one `to_json` of the whole frame without a
    string of the whole output ever being held."""
    with open(path, "w", encoding="utf-8") as fh:
        if len(frame.columns) and len(frame):
            for start in range(0, len(frame), WRITE_ROWS):
                # pandas' own JSON keeps NaN as null and numpy scalars as numbers.
                text = frame.iloc[start : start + WRITE_ROWS].to_json(
                    orient="records", lines=True, force_ascii=False
                )
                text = unescaped_slashes(text)
                fh.write(text if text.endswith("\n") else text + "\n")


_ESCAPED_SLASH = re.compile(r"(?<!\\)((?:\\\\)*)\\/")
"""`\\/` after an even run of backslashes (itself an escape, not an escaped backslash)."""


def unescaped_slashes(text: str) -> str:
    """pandas' JSON writes `/` as `\\/` (legal JSON, but not what the input held, and what
    every other JSON writer leaves alone): `a/b` stays `a/b`, an escaped backslash stays."""
    return _ESCAPED_SLASH.sub(r"\1/", text) if "\\/" in text else text
