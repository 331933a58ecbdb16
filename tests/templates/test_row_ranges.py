"""Cutting files into row ranges: every row in exactly one range, cuts at line starts,
stable keys, CSV cut only where no quoted field spans a cut, Parquet between row groups,
and parts joined back byte for byte."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from templates.row_ranges import (
    RowRange,
    cut,
    join_parts,
    parse_range_key,
    range_key,
    read_bytes,
    read_lines,
)


def _jsonl(path: Path, rows: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    text = "".join(
        json.dumps({"id": i, "text": "w" * rng.randint(0, 300)}) + "\n" for i in range(rows)
    )
    path.write_text(text)
    return text.encode()


@pytest.mark.parametrize("rows,per_item", [(1, 10), (10, 3), (5000, 300), (20000, 1000)])
def test_jsonl_ranges_cover_every_line_once_at_line_starts(tmp_path, rows, per_item):
    data = _jsonl(tmp_path / "a.jsonl", rows)
    ranges = cut(str(tmp_path / "a.jsonl"), "a.jsonl", per_item).ranges
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(data[r.start - 1 : r.start] == b"\n" for r in ranges[1:])
    lines = [line for r in ranges for line in read_lines(str(tmp_path / "a.jsonl"), r)]
    assert b"".join(lines) == data and len(lines) == rows
    # about N rows each: the cut is sized from sampled line lengths
    if rows >= 5000:
        sizes = [sum(1 for _ in read_lines(str(tmp_path / "a.jsonl"), r)) for r in ranges]
        assert abs(len(ranges) - rows / per_item) <= max(2, rows / per_item * 0.2)
        assert max(sizes) < per_item * 1.6


def test_cuts_are_stable_and_keys_sort_in_range_order(tmp_path):
    _jsonl(tmp_path / "a.jsonl", 3000, seed=3)
    first = cut(str(tmp_path / "a.jsonl"), "d/a.jsonl", 100).ranges
    again = cut(str(tmp_path / "a.jsonl"), "d/a.jsonl", 100).ranges
    assert first == again
    keys = [r.key for r in first]
    assert keys == sorted(keys) and keys[0] == f"d/a.jsonl@00000-of-{len(first):05d}"
    assert [parse_range_key(k) for k in keys] == [("d/a.jsonl", r.index, r.count) for r in first]


def test_a_key_that_is_no_range_is_not_read_as_one():
    assert parse_range_key("a.jsonl") is None
    assert parse_range_key("a.txt@00001-of-00002") is None  # not a format that is cut
    assert parse_range_key("a.jsonl@00002-of-00002") is None  # index past the count
    assert parse_range_key("a.jsonl@x-of-2") is None
    assert parse_range_key(range_key("a@b.jsonl", 123456, 200000)) == ("a@b.jsonl", 123456, 200000)


def test_a_file_without_a_final_newline_and_a_huge_line(tmp_path):
    path = tmp_path / "a.jsonl"
    big = "x" * 200000
    rows = (
        [json.dumps({"id": i}) for i in range(50)] + [json.dumps({"big": big})] + ['{"id": 1}'] * 50
    )
    path.write_text("\n".join(rows))  # no final newline
    ranges = cut(str(path), "a.jsonl", 10).ranges
    lines = [line for r in ranges for line in read_lines(str(path), r)]
    assert b"".join(lines) == path.read_bytes() and len(lines) == len(rows)


def _csv(path: Path, rows: int, quoted_newline_at: int | None = None) -> None:
    lines = ["id,text\n"]
    for i in range(rows):
        text = '"two\nlines"' if i == quoted_newline_at else f'"quoted, {i}"'
        lines.append(f"{i},{text}\n")
    path.write_text("".join(lines))


def test_csv_is_cut_after_its_header_and_each_range_reads_under_it(tmp_path):
    import pandas as pd

    path = tmp_path / "t.csv"
    _csv(path, 3000)
    result = cut(str(path), "t.csv", 200)
    assert not result.reason and len(result.ranges) > 5
    frames = [
        pd.read_csv(__import__("io").BytesIO(read_bytes(str(path), r, header=True)))
        for r in result.ranges
    ]
    whole = pd.read_csv(path)
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)


def test_csv_whose_quoted_line_breaks_fall_at_cuts_stays_whole(tmp_path):
    path = tmp_path / "t.csv"
    # every row spans two lines: half of all line starts lie inside a quoted field
    path.write_text("id,text\n" + "".join(f'{i},"first line\nsecond {i}"\n' for i in range(3000)))
    result = cut(str(path), "t.csv", 200)
    assert len(result.ranges) == 1 and (result.ranges[0].start, result.ranges[0].end) == (
        0,
        path.stat().st_size,
    )
    assert "quoted field spans a line break" in result.reason


def test_csv_with_quoted_line_breaks_between_cuts_is_still_cut(tmp_path):
    import io

    import pandas as pd

    path = tmp_path / "t.csv"
    _csv(path, 3000, quoted_newline_at=5)  # inside the first range only
    result = cut(str(path), "t.csv", 200)
    assert len(result.ranges) > 5 and not result.reason
    frames = [pd.read_csv(io.BytesIO(read_bytes(str(path), r, header=True))) for r in result.ranges]
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), pd.read_csv(path))


def test_parquet_is_cut_between_row_groups(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pd.DataFrame({"id": range(1000)}).to_parquet(path, row_group_size=100)
    ranges = cut(str(path), "p.parquet", 250).ranges
    assert [(r.start, r.end) for r in ranges] == [(0, 2), (2, 5), (5, 7), (7, 10)]
    one = cut(str(path), "p.parquet", 5000).ranges
    assert len(one) == 1
    big_groups = tmp_path / "q.parquet"
    pd.DataFrame({"id": range(1000)}).to_parquet(big_groups, row_group_size=1000)
    assert len(cut(str(big_groups), "q.parquet", 10).ranges) == 1  # one group: not cut
    assert pq.ParquetFile(path).metadata.num_rows == 1000


def test_parts_join_back_in_order(tmp_path):
    import pandas as pd

    parts = []
    for i in range(3):
        p = tmp_path / f"{i}.jsonl"
        p.write_text(f'{{"i": {i}}}\n')
        parts.append(str(p))
    join_parts(parts, ".jsonl", str(tmp_path / "all.jsonl"))
    assert (tmp_path / "all.jsonl").read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'
    frames = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3], "b": ["x"]})]
    pq_parts = []
    for i, frame in enumerate(frames):
        frame.to_parquet(tmp_path / f"{i}.parquet", index=False)
        pq_parts.append(str(tmp_path / f"{i}.parquet"))
    join_parts(pq_parts, ".parquet", str(tmp_path / "all.parquet"))
    joined = pd.read_parquet(tmp_path / "all.parquet")
    assert joined["a"].tolist() == [1, 2, 3] and joined["b"].tolist()[2] == "x"


def test_an_empty_file_is_one_range(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert cut(str(tmp_path / "e.jsonl"), "e.jsonl", 5).ranges == [
        RowRange("e.jsonl", 0, 1, 0, 0, 0)
    ]


def test_a_file_too_small_for_n_rows_is_one_range_without_being_read(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    _jsonl(path, 20)
    opened = []
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k)
    )
    size = path.stat().st_size
    assert cut(str(path), "a.jsonl", size // 3 + 1).ranges == [RowRange("a.jsonl", 0, 1, 0, size)]
    assert opened == []
