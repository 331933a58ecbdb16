"""JSONL frames of a ModelArts mode-1 item: read per column and written in slices of rows,
they must equal what one `pd.DataFrame(list of row dicts)` and one `to_json` of the whole
frame give (the reference constructions are inlined below)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

from dispatcher.errors import MalformedInput  # noqa: E402
from templates.adapters import modelarts_files  # noqa: E402
from templates.adapters.modelarts_files import (  # noqa: E402
    read_frame,
    rows_frame,
    unescaped_slashes,
    write_frame,
)

# pandas 3 announces that datetimes will be written as ISO strings: both writers are equal.
pytestmark = pytest.mark.filterwarnings("ignore:The default formatting of datetime")

# --- references: the one-shot constructions the chunked code must match --------------------


def reference_rows(path: str) -> list[dict]:
    """Rows as a list of dicts, read as UTF-8 text (universal newlines), with the messages
    of malformed input the module has always given."""
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
    except UnicodeDecodeError as exc:
        with open(path, "rb") as fh:
            bad = next(n for n, raw in enumerate(fh, 1) if not _decodes(raw))
        raise MalformedInput(f"{path}:{bad}: not UTF-8 text: {exc.reason}") from None
    return rows


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def reference_jsonl(frame) -> bytes:
    """The whole frame as one `to_json` string (slashes unescaped, as the writer does:
    `test_slashes_are_written_as_they_were_read` checks that part)."""
    if not (len(frame.columns) and len(frame)):
        return b""
    text = unescaped_slashes(frame.to_json(orient="records", lines=True, force_ascii=False))
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def assert_same_frame(got, want) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.columns.dtype == want.columns.dtype
    assert list(got.dtypes) == list(want.dtypes)
    assert type(got.index) is type(want.index) and got.index.equals(want.index)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_index_type=True)
    for name in got.columns[got.dtypes == np.dtype("O")]:  # None and NaN stay apart there
        assert [type(v) for v in got[name]] == [type(v) for v in want[name]], name


def check_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    assert_same_frame(read_frame(str(path), "rows.jsonl"), pd.DataFrame(reference_rows(path)))


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# --- reading: equal to the list of dicts ----------------------------------------------------

CASES = {
    "different fields": jsonl({"a": 1, "b": "x"}, {"c": 2.5}, {"b": "y", "a": 3}),
    "nulls": jsonl({"a": None, "b": 1}, {"a": None, "b": None}, {"a": None}),
    "ints and floats": jsonl({"v": 1}, {"v": 2.5}, {"v": -3}, {"v": 1e300}),
    "ints and nulls": jsonl({"v": 1}, {"v": None}, {"v": 3}),
    "ints and missing": jsonl({"v": 1}, {"w": 0}, {"v": 3}),
    "bools": jsonl({"b": True}, {"b": False}),
    "bools and nulls": jsonl({"b": True}, {"b": None}, {}),
    "bools and ints": jsonl({"b": True}, {"b": 0}, {"b": 1.5}),
    "nested": jsonl({"l": [1, [2]], "d": {"k": {"x": None}}}, {"l": [], "d": {}}),
    "unicode": jsonl({"t": "héllo 世界 🎉", "é": "ü"}, {"t": None}, {"t": 'a/b\\c"d'}),
    "strings and nulls": jsonl({"s": "a"}, {"s": None}, {"x": 1}),
    "strings and numbers": jsonl({"s": "1"}, {"s": 1}, {"s": 1.5}),
    "big ints": jsonl({"n": 2**63}, {"n": 1}, {"n": -(2**70)}),
    "uint64": jsonl({"n": 2**63}, {"n": 2**64 - 1}),
    "all null column": jsonl({"a": None, "b": 1}, {"a": None, "b": 2}),
    "empty objects": jsonl({}, {}, {}),
    "empty objects then fields": jsonl({}, {"a": 1}, {}),
    "empty file": b"",
    "blank lines": b"\n  \n\t\n\r\n",
    "blank lines around rows": b'\n{"a": 1}\n\n   \n{"a": 2}\n\n',
    "no final newline": b'{"a": 1}\n{"a": 2}',
    "crlf": b'{"a": 1}\r\n{"b": "x"}\r\n',
    "duplicate keys": b'{"a": 1, "a": 2, "b": 3}\n',
    "special floats": b'{"f": NaN}\n{"f": Infinity}\n{"f": -Infinity}\n{"f": 1}\n',
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_file_reads_as_the_frame_of_its_list_of_dicts(tmp_path, name):
    check_file(tmp_path, CASES[name])


def test_many_rows_with_late_and_partly_null_columns_read_as_the_list_of_dicts(tmp_path):
    """More rows than a slice of text and than a slice of output: columns whose first
    rows would make another dtype than the whole (null in a long run then ints or text, a
    column of late rows only, ints then one float far down), text with nulls."""
    rows = []
    for i in range(2 * modelarts_files.SLICE_ROWS + 10):
        row: dict = {"id": i, "text": f"row {i} é/\\" if i % 1000 else None}
        row["late_int"] = None if i < 30_000 else i
        row["late_text"] = None if i < 70_000 else f"t{i}"
        if i >= 120_000:
            row["only_late"] = i % 3 == 0
        row["turns_float"] = i if i != 100_000 else 0.5
        if i % 7 == 0:
            row["sparse"] = {"k": [i]}
        rows.append(row)
    check_file(tmp_path, jsonl(*rows))


def test_random_rows_read_as_the_list_of_dicts(tmp_path):
    """Rows drawn from a few keys and value kinds, long runs of one kind included."""
    rng = np.random.default_rng(7)
    values = [None, 0, 7, -(2**40), 2**64, 1.5, math.pi, True, False, "", "s", "ü/\\", [1], {}]
    values += ["t", "u", None, "v"]  # runs of text and nulls
    for trial in range(60):
        keys = [f"k{i}" for i in range(int(rng.integers(1, 6)))]
        count = int(rng.integers(0, 300))
        run = int(rng.integers(1, 100))
        rows = []
        for i in range(count):
            choices = rng.permutation(keys)[: int(rng.integers(0, len(keys) + 1))]
            kind = (i // run + trial) % len(values)
            rows.append({k: values[(kind + j) % len(values)] for j, k in enumerate(choices)})
        check_file(tmp_path, jsonl(*rows))


TEXT_SLICES = {
    "text": [{"t": f"s{i}/é"} for i in range(20)],
    "text, nulls and missing": [{"t": ("a", None, "b")[i % 3]} if i % 5 else {} for i in range(20)],
    "text, then a null slice": [{"t": None if 4 <= i < 12 else "x"} for i in range(20)],
    "text, then a missing slice": [{"t": "x"} if not 4 <= i < 8 else {"u": 1} for i in range(20)],
    "text, then an int": [{"t": ("a", None)[i % 2]} if i != 17 else {"t": 3} for i in range(20)],
    "text, then a bool": [{"t": "a"} for i in range(19)] + [{"t": True}],
    "text, then a list": [{"t": "a"}, {}, {"t": None}] * 6 + [{"t": ["a"]}],
    "missing, then text": [{} if i < 9 else {"t": "a"} for i in range(20)],
    "ints, then text": [{"t": i} for i in range(10)] + [{"t": "a"}] * 10,
    "one slice": [{"t": "a"}, {"t": None}, {}],
}


@pytest.mark.parametrize("name", list(TEXT_SLICES))
def test_text_converted_in_slices_reads_as_the_list_of_dicts(tmp_path, monkeypatch, name):
    """Slices of 4 rows: text columns are built a slice at a time; where a later slice is
    no text, the values already released are put back and the whole column is built."""
    monkeypatch.setattr(modelarts_files, "SLICE_ROWS", 4)
    check_file(tmp_path, jsonl(*TEXT_SLICES[name]))


def test_random_rows_in_small_slices_read_as_the_list_of_dicts(tmp_path, monkeypatch):
    monkeypatch.setattr(modelarts_files, "SLICE_ROWS", 16)
    test_random_rows_read_as_the_list_of_dicts(tmp_path)


def test_rows_frame_takes_raw_lines_of_a_byte_range():
    lines = [b'{"a": 1}\n', b"\n", b'{"a": null, "b": "\xc3\xa9"}\n']
    want = pd.DataFrame([{"a": 1}, {"a": None, "b": "é"}])
    assert_same_frame(rows_frame(iter(lines), "f.jsonl"), want)


# --- reading: malformed input ---------------------------------------------------------------

MALFORMED = {
    "not json": b'{"a": 1}\n\n{"a": \n',
    "not json at the end": b'{"a": 1}\n{"a": ',
    "not an object": b'{"a": 1}\n[1, 2]\n',
    "a long non-object": b'"' + b"x" * 100 + b'"\n',
    "a number": b"42\n",
    "not utf-8": b'{"a": 1}\n\n{"a": "\xff"}\n',
    "a cut utf-8 sequence at the end": b'{"a": 1}\n{"a": "\xe2\x82',
    "a cut utf-8 sequence in a line": b'{"a": "\xe2\x82"}\n{"a": 1}\n',
    "utf-8 far down": b'{"a": 1}\n' * 5000 + b'{"a": "\xc3\x28"}\n',
    "a byte order mark": b'\xef\xbb\xbf{"a": 1}\n',
    "bad json after crlf lines": b'{"a": 1}\r\n{"a": \r\n',
    "lone carriage returns": b'{"a": 1}\r{"a": 2}\r{"a": \n{"a": 3}\n',
    "a carriage return inside a row": b'{"a": 1}\n{"a":\r 2}\n',
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_is_reported_as_it_always_was(tmp_path, name):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(MALFORMED[name])
    with pytest.raises(MalformedInput) as want:
        reference_rows(str(path))
    with pytest.raises(MalformedInput) as got:
        read_frame(str(path), "bad.jsonl")
    assert str(got.value) == str(want.value)


def test_lone_carriage_returns_end_rows_as_text_mode_reads_them(tmp_path):
    check_file(tmp_path, b'{"a": 1}\r{"a": 2}\r\n{"b": 3}\r')


@pytest.mark.parametrize(
    "lines, message",
    [
        ([b'{"a": 1}\n', b"{oops\n"], "part.jsonl:101: not a JSON row: "),
        ([b"\n", b"[]\n"], "part.jsonl:101: expected a JSON object, got []"),
        ([b'{"a": "\xff"}\n'], "part.jsonl:100: not UTF-8 text: invalid start byte"),
    ],
)
def test_rows_frame_numbers_lines_from_first_line(lines, message):
    with pytest.raises(MalformedInput) as err:
        rows_frame(lines, "part.jsonl", first_line=100)
    assert str(err.value).startswith(message)


# --- writing: the bytes of one to_json -------------------------------------------------------


def varied_frame(rows: int):
    i = np.arange(rows)
    return pd.DataFrame(
        {
            "id": i,
            "score": np.where(i % 5 == 0, np.nan, i / 7),
            "big": i.astype("uint64") * 2**40,
            "flag": i % 2 == 0,
            "text": [f'r{n} é世/\\"\n\t{"🎉" if n % 3 else ""}' for n in range(rows)],
            "maybe": [None if n % 4 == 0 else f"v{n}" for n in range(rows)],
            "mixed": [[n, {"k": "a/b"}] if n % 2 else n * 0.5 for n in range(rows)],
            "when": pd.to_datetime(i, unit="s"),
            "cat": pd.Categorical([("a", "b/c", "ü")[n % 3] for n in range(rows)]),
        }
    )


@pytest.mark.parametrize("extra", [0, 1, 7_123])  # whole slices only, one row over, a part
def test_jsonl_written_in_slices_is_the_bytes_of_one_to_json(tmp_path, extra):
    frame = varied_frame(2 * modelarts_files.WRITE_ROWS + extra)
    path = tmp_path / "out.jsonl"
    write_frame(frame, str(path), "out.jsonl")
    assert path.read_bytes() == reference_jsonl(frame)


def test_small_slices_write_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(modelarts_files, "WRITE_ROWS", 3)
    for rows in (1, 3, 10):
        frame = varied_frame(rows)
        path = tmp_path / f"out{rows}.jsonl"
        write_frame(frame, str(path), "out.jsonl")
        assert path.read_bytes() == reference_jsonl(frame)


@pytest.mark.parametrize(
    "frame",
    [lambda: pd.DataFrame(), lambda: pd.DataFrame({"a": []}), lambda: pd.DataFrame(index=[0])],
)
def test_a_frame_without_rows_or_columns_writes_an_empty_file(tmp_path, frame):
    path = tmp_path / "out.jsonl"
    write_frame(frame(), str(path), "out.jsonl")
    assert path.read_bytes() == b""


def test_a_frame_read_and_written_keeps_its_rows(tmp_path):
    data = CASES["unicode"] + CASES["nested"] + CASES["ints and floats"]
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    frame = read_frame(str(src), "in.jsonl")
    out = tmp_path / "out.jsonl"
    write_frame(frame, str(out), "in.jsonl")
    assert out.read_bytes() == reference_jsonl(pd.DataFrame(reference_rows(str(src))))


@pytest.mark.parametrize("value", ["a/b", "http://x/y", "a\\/b", "x\\\\/y", "\\", "/", "\\\\"])
def test_slashes_are_written_as_they_were_read(tmp_path, value):
    import pandas as pd

    path = tmp_path / "out.jsonl"
    write_frame(pd.DataFrame([{"s": value, "n": 1}]), str(path), "out.jsonl")
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"s": value, "n": 1}
    assert "\\/" not in text.replace("\\\\", "")  # no escaped slash left
