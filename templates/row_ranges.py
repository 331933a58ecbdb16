"""Row ranges of big files: where a JSONL, CSV or Parquet file is cut into items of about
N rows, how a range's rows are read back, and how the parts made from them join into one
file again.

Planning reads no file whole. A JSONL file is cut by byte offsets: its mean line length
is sampled at a few places, the file is cut into `size / (N * mean)` equal spans, and
each cut moves forward to the next line start (one seek and one short read per cut).
A Parquet file is cut between row groups, from the counts in its footer. A CSV file is cut
like JSONL, but only when no quoted field spans a cut: the quotes before each cut are
counted (a streaming count, never the file in memory); where one would, the file stays
one item. The cuts depend only on the file and N, so a range's key is stable.

pyarrow is imported only for a Parquet file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import MalformedInput

SPLIT_FORMATS = (".jsonl", ".csv", ".parquet")
"""The formats a file is cut into row ranges in."""
KEY_MARK = "@"
"""Between a file's key and its range's place: `data/a.jsonl@00012-of-00040`."""
INDEX_WIDTH = 5
SAMPLES = 8
SAMPLE_BYTES = 64 * 1024
BUFFER = 1 << 20
MIN_ROW_BYTES = 3
"""The shortest row with its newline (`{}` and `\n`, a CSV `1,2` line is longer): a file
smaller than N of them holds fewer than N rows, so it is one item without being opened."""


@dataclass(frozen=True)
class RowRange:
    """Range `index` of `count` of the file `file` (its key): bytes `[start, end)` of a
    JSONL or CSV file (a CSV's header is bytes `[0, header)`), row groups
    `[start, end)` of a Parquet file."""

    file: str
    index: int
    count: int
    start: int
    end: int
    header: int = 0

    @property
    def key(self) -> str:
        return range_key(self.file, self.index, self.count)

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def range_key(file: str, index: int, count: int) -> str:
    """`file@00012-of-00040`: range 12 of the 40 of `file`, numbers as wide as the count
    needs (at least five digits), so a file's ranges sort in their order, and a key says
    which file, which range and how many there are without a lookup."""
    width = max(INDEX_WIDTH, len(str(count)))
    return f"{file}{KEY_MARK}{index:0{width}d}-of-{count:0{width}d}"


def parse_range_key(key: str) -> tuple[str, int, int] | None:
    """(file key, index, count) of a range's key; None for any other key."""
    file, mark, place = key.rpartition(KEY_MARK)
    index, of, count = place.partition("-of-")
    if not mark or not of or not (index + count).isascii():
        return None
    if not index.isdigit() or not count.isdigit():
        return None
    if file_format(file) is None or int(index) >= int(count):
        return None
    return file, int(index), int(count)


def file_format(name: str) -> str | None:
    """`.jsonl`, `.csv` or `.parquet` for a file that can be cut, by its name; else None."""
    lowered = name.lower()
    return next((ext for ext in SPLIT_FORMATS if lowered.endswith(ext)), None)


@dataclass(frozen=True)
class Cut:
    """How a file was cut: its ranges (one range: not cut), and why not where it could not
    be (a line for a note)."""

    ranges: list[RowRange]
    reason: str = ""


def cut(path: str, key: str, rows_per_item: int) -> Cut:
    """The ranges of about `rows_per_item` rows of the file `path` (key `key`)."""
    kind = file_format(key)
    if kind == ".parquet":
        return Cut(_parquet_ranges(path, key, rows_per_item))
    size = os.path.getsize(path)
    if size < MIN_ROW_BYTES * rows_per_item:  # fewer than N rows fit: one item, nothing read
        return Cut([RowRange(key, 0, 1, 0, size)])
    if kind == ".jsonl":
        return Cut(_text_ranges(path, key, rows_per_item, 0, size))
    if kind == ".csv":
        return _csv_cut(path, key, rows_per_item, size)
    return Cut([RowRange(key, 0, 1, 0, size)])


# --- JSONL (and CSV's rows) -------------------------------------------------------------------


def _text_ranges(path: str, key: str, rows_per_item: int, begin: int, size: int) -> list[RowRange]:
    """Ranges of lines of `[begin, size)`: equal spans, each cut moved to a line start."""
    span = size - begin
    if span <= 0:
        return [RowRange(key, 0, 1, begin, size, begin)]
    with open(path, "rb") as fh:
        mean = _mean_line(fh, begin, size)
        wanted = max(1, -(-span // max(1, int(mean * rows_per_item))))
        cuts = [begin]
        for k in range(1, wanted):
            at = _line_start(fh, begin + span * k // wanted, size)
            if cuts[-1] < at < size:
                cuts.append(at)
    cuts.append(size)
    count = len(cuts) - 1
    return [RowRange(key, i, count, cuts[i], cuts[i + 1], begin) for i in range(count)]


def _mean_line(fh: object, begin: int, size: int) -> float:
    """The mean length of a line, from up to SAMPLES reads of SAMPLE_BYTES spread over the
    file (whole lines only; the whole span when it is small)."""
    span = size - begin
    if span <= SAMPLES * SAMPLE_BYTES:
        fh.seek(begin)  # type: ignore[attr-defined]
        data = fh.read(span)  # type: ignore[attr-defined]
        return span / max(1, data.count(b"\n") + (not data.endswith(b"\n")))
    lines = length = 0
    for k in range(SAMPLES):
        fh.seek(begin + (span - SAMPLE_BYTES) * k // (SAMPLES - 1))  # type: ignore[attr-defined]
        data = fh.read(SAMPLE_BYTES)  # type: ignore[attr-defined]
        first, last = data.find(b"\n"), data.rfind(b"\n")
        if first < 0 or first == last:
            continue  # no whole line in the sample
        lines += data.count(b"\n", first + 1, last + 1)
        length += last - first
    return length / lines if lines else float(SAMPLE_BYTES)


def _line_start(fh: object, at: int, size: int) -> int:
    """The first line start at or after byte `at` (the byte before it is a newline)."""
    fh.seek(at - 1)  # type: ignore[attr-defined]
    fh.readline()  # type: ignore[attr-defined]
    return min(fh.tell(), size)  # type: ignore[attr-defined]


def json_row(line: str | bytes, where: str) -> dict[str, Any]:
    """One JSONL line's object; anything else is malformed input named by `where`
    (`FILE:LINE`)."""
    try:
        row = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError too: the data is at fault, not the task
        raise MalformedInput(f"{where}: not a JSON row: {exc}") from None
    if not isinstance(row, dict):
        raise MalformedInput(f"{where}: expected a JSON object, got {row!r:.60}")
    return row


def read_lines(path: str, part: RowRange) -> Iterator[bytes]:
    """The raw lines of a JSONL range, newlines included (read line by line)."""
    with open(path, "rb") as fh:
        fh.seek(part.start)
        left = part.end - part.start
        while left > 0:
            line = fh.readline(left)
            if not line:
                return
            left -= len(line)
            yield line


_KNOWN_LINES: dict[str, dict[int, int]] = {}
"""path -> byte offset -> the line number that starts there, as this process learned them."""


def first_line_number(path: str, part: RowRange) -> int:
    """The line number of a range's first line: newlines counted from the nearest offset
    this process already knows (a worker given a file's ranges in order counts each byte
    once; one given a single range counts what lies before it)."""
    known = _KNOWN_LINES.setdefault(path, {0: 1})
    if part.start in known:
        return known[part.start]
    offset = max(o for o in known if o <= part.start)
    lines, left = known[offset], part.start - offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        while left > 0:
            data = fh.read(min(BUFFER, left))
            if not data:
                break
            lines += data.count(b"\n")
            left -= len(data)
    known[part.start] = lines
    return lines


def learn_line_number(path: str, offset: int, line: int) -> None:
    """Remember that line `line` of `path` starts at byte `offset` (a range read to its
    end tells where the next one starts)."""
    _KNOWN_LINES.setdefault(path, {0: 1})[offset] = line


def read_bytes(path: str, part: RowRange, header: bool = False) -> bytes:
    """The bytes of a text range; with `header`, a CSV's header first (unless the range
    begins with it)."""
    with open(path, "rb") as fh:
        head = b""
        if header and part.start > 0 and part.header:
            head = fh.read(part.header)
        fh.seek(part.start)
        return head + fh.read(part.end - part.start)


# --- CSV --------------------------------------------------------------------------------------


def _csv_cut(path: str, key: str, rows_per_item: int, size: int) -> Cut:
    """Ranges of a CSV file after its header, where no quoted field spans a cut."""
    header = _csv_header_end(path, size)
    if header is None:
        return Cut([RowRange(key, 0, 1, 0, size)], "its header has an unclosed quote")
    ranges = _text_ranges(path, key, rows_per_item, header, size)
    if len(ranges) == 1:
        return Cut([RowRange(key, 0, 1, 0, size)])
    odd = _cuts_inside_quotes(path, [r.start for r in ranges[1:]])
    if odd:
        return Cut(
            [RowRange(key, 0, 1, 0, size)],
            f"a quoted field spans a line break at byte {odd[0]}: a cut there would split a row",
        )
    first = ranges[0]
    ranges[0] = RowRange(key, 0, first.count, 0, first.end, header)
    return Cut(ranges)


def _csv_header_end(path: str, size: int) -> int | None:
    """Where the header record ends (after its newline, outside quotes); None when the
    file has no closed header."""
    quotes = 0
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            data = fh.read(BUFFER)
            if not data:
                break
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    quotes += data.count(b'"', start)
                    break
                quotes += data.count(b'"', start, nl)
                if quotes % 2 == 0:
                    return offset + nl + 1
                start = nl + 1
            offset += len(data)
    return size if quotes % 2 == 0 else None


def _cuts_inside_quotes(path: str, cuts: Sequence[int]) -> list[int]:
    """The cuts that fall inside a quoted field: an odd number of quote characters before
    them (a doubled quote inside a field counts twice, so it keeps the parity)."""
    inside, quotes, offset = [], 0, 0
    with open(path, "rb") as fh:
        for at in cuts:
            while offset < at:
                data = fh.read(min(BUFFER, at - offset))
                if not data:
                    break
                quotes += data.count(b'"')
                offset += len(data)
            if quotes % 2:
                inside.append(at)
    return inside


# --- Parquet ----------------------------------------------------------------------------------


def _parquet_ranges(path: str, key: str, rows_per_item: int) -> list[RowRange]:
    """Consecutive row groups of about `rows_per_item` rows together (from the footer).

    The number of ranges comes from the file's rows and N; each cut goes to the row group
    where its share of rows begins, so a file whose groups are big has fewer ranges."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    counts = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    total = sum(counts)
    groups = len(counts)
    if groups <= 1 or total <= rows_per_item:
        return [RowRange(key, 0, 1, 0, groups)]
    wanted = -(-total // rows_per_item)
    cuts, seen, g = [0], 0, 0
    for k in range(1, wanted):
        target = total * k // wanted
        while g < groups and seen + counts[g] <= target:
            seen += counts[g]
            g += 1
        if cuts[-1] < g < groups:
            cuts.append(g)
    cuts.append(groups)
    count = len(cuts) - 1
    return [RowRange(key, i, count, cuts[i], cuts[i + 1]) for i in range(count)]


def read_row_groups(path: str, part: RowRange) -> object:
    """The rows of a Parquet range, as a pyarrow Table."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_groups(list(range(part.start, part.end)))


# --- the parts joined -------------------------------------------------------------------------


def join_parts(parts: Sequence[str], kind: str, target: str) -> None:
    """Write the parts, in order, as one file of format `kind` at `target`.

    JSONL and CSV parts are concatenated byte for byte (a CSV part after the first has no
    header). Parquet parts are copied row group by row group under one schema (columns a
    part lacks are nulls there), one part in memory at a time."""
    if kind != ".parquet":
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, BUFFER)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    schema = pa.unify_schemas(schemas)
    with pq.ParquetWriter(target, schema) as writer:
        for part in parts:
            table = pq.read_table(part)
            for field in schema:
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(len(table), field.type))
            writer.write_table(table.select(schema.names).cast(schema))
