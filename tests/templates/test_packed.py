"""Packed outputs (`OutputPacked`): a row task's rows, one part file per item (a file, or
a row range of one with `--rows-per-item`), in order, committed whole; the same rows make
the same bytes on every engine and every run; parts another N cut are refused or, under
`--force`, replaced; a kill resumes at the unfinished parts."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from conftest import dispatch_here, failures, run_dispatch, start_dispatch, task_file, tree

TASK = task_file("packed_rows")


def _rows(root: Path, rows: int = 1000, **marks: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "a.jsonl", "w") as fh:
        for i in range(rows):
            row = {"id": i, "text": f"row {i} " + "w" * (i % 37), "drop": i % 7 == 0}
            row.update({name: True for name, at in marks.items() if at == i})
            fh.write(json.dumps(row) + "\n")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "b.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": f"b{i}"}) + "\n" for i in range(5))
    )
    return root


def _expected(src: Path, name: str) -> bytes:
    out = []
    for line, raw in enumerate((src / name).read_text().splitlines(), 1):
        row = json.loads(raw)
        if not row.get("drop"):
            out.append(
                json.dumps(
                    {"id": row["id"], "text": row["text"].upper(), "line": line}, ensure_ascii=False
                )
                + "\n"
            )
    return "".join(out).encode()


def _run(
    src: Path,
    out: Path,
    *extra: str,
    backbone: str = "serial",
    env: dict | None = None,
    cls: str = "Upper",
):
    return run_dispatch(TASK, cls, "--backbone", backbone, "--log-dir", out.parent / "logs", *extra,
                        "--mixin", f"input={src}", f"output={out}", env=env)  # fmt: skip


def _joined(out: Path, name: str, ext: str = ".jsonl", opener=None) -> bytes:
    parts = sorted(out.glob(f"{name}@*{ext}"))
    return b"".join((opener or Path.read_bytes)(p) for p in parts)


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_a_part_per_file_holds_the_returned_rows_in_order(tmp_path, backbone):
    src = _rows(tmp_path / "in")
    proc = _run(src, tmp_path / "out", backbone=backbone)
    assert proc.returncode == 0, proc.stderr
    outputs = tree(tmp_path / "out")
    assert sorted(outputs) == ["a.jsonl.jsonl", "sub/b.jsonl.jsonl"]
    assert outputs["a.jsonl.jsonl"] == _expected(src, "a.jsonl")
    assert outputs["sub/b.jsonl.jsonl"] == _expected(src, "sub/b.jsonl")
    again = _run(src, tmp_path / "out", backbone=backbone)
    assert again.returncode == 0 and "nothing to do" in again.stderr


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_row_ranges_pack_into_a_part_each(tmp_path, backbone):
    src = _rows(tmp_path / "in", rows=3000)
    proc = _run(src, tmp_path / "out", "--rows-per-item", "200", backbone=backbone)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    parts = sorted(out.glob("a.jsonl@*.jsonl"))
    assert len(parts) > 10 and parts[0].name.startswith("a.jsonl@00000-of-")
    assert _joined(out, "a.jsonl") == _expected(src, "a.jsonl")
    assert (out / "sub" / "b.jsonl.jsonl").read_bytes() == _expected(
        src, "sub/b.jsonl"
    )  # small: whole


def test_gzip_zstd_and_parquet_parts(tmp_path):
    import pandas as pd
    import pyarrow as pa

    src = _rows(tmp_path / "in", rows=2000)
    expected = _expected(src, "a.jsonl")
    for run in ("one", "two"):
        proc = _run(
            src, tmp_path / run, "--rows-per-item", "300", "--mixin", "output_mode.compression=gzip"
        )
        assert proc.returncode == 0, proc.stderr
        assert (
            _joined(
                tmp_path / run, "a.jsonl", ".jsonl.gz", lambda p: gzip.decompress(p.read_bytes())
            )
            == expected
        )
    assert tree(tmp_path / "one") == tree(tmp_path / "two")  # no name, no time in a gzip header
    proc = _run(
        src, tmp_path / "zst", "--rows-per-item", "300", "--mixin", "output_mode.compression=zstd"
    )
    assert proc.returncode == 0, proc.stderr

    def unzstd(path: Path) -> bytes:
        with pa.input_stream(str(path), compression="zstd") as fh:
            return fh.read()

    assert _joined(tmp_path / "zst", "a.jsonl", ".jsonl.zst", unzstd) == expected
    proc = _run(
        src, tmp_path / "pq", "--rows-per-item", "300", "--mixin", "output_mode.format=parquet"
    )
    assert proc.returncode == 0, proc.stderr
    frames = [pd.read_parquet(p) for p in sorted((tmp_path / "pq").glob("a.jsonl@*.parquet"))]
    rows = pd.concat(frames, ignore_index=True).to_dict("records")
    assert [json.dumps(r) + "\n" for r in rows] == [
        line + "\n" for line in expected.decode().splitlines()
    ]


def test_parts_of_another_n_are_refused_and_replaced_under_force(tmp_path):
    src = _rows(tmp_path / "in", rows=2000)
    out = tmp_path / "out"
    assert _run(src, out, "--rows-per-item", "300").returncode == 0
    made = sorted(p.name for p in out.glob("a.jsonl@*"))
    other = dispatch_here(TASK, "Upper", "--rows-per-item", "100", "--log-dir", tmp_path / "logs",
                          "--mixin", f"input={src}", f"output={out}")  # fmt: skip
    assert other.returncode == 2, other.stderr
    assert f"a.jsonl (its outputs hold {made[0]})" in other.stderr and "--force" in other.stderr
    whole = dispatch_here(TASK, "Upper", "--log-dir", tmp_path / "logs",
                          "--mixin", f"input={src}", f"output={out}")  # fmt: skip
    assert whole.returncode == 2  # not cut now, but cut before: refused too
    assert "without --rows-per-item, files are one part each" in whole.stderr
    forced = _run(src, out, "--rows-per-item", "100", "--force")
    assert forced.returncode == 0, forced.stderr
    now = sorted(p.name for p in out.glob("a.jsonl@*"))
    assert len(now) > len(made) and not set(now) & set(made)
    assert _joined(out, "a.jsonl") == _expected(src, "a.jsonl")


def test_a_failing_row_fails_its_range_and_a_malformed_one_names_its_line(tmp_path):
    src = _rows(tmp_path / "in", rows=2000, boom=1500)
    proc = _run(src, tmp_path / "out", "--rows-per-item", "200")
    assert proc.returncode == 1, proc.stderr
    failed = failures(tmp_path / "logs")
    assert len(failed) == 1 and failed[0]["key"].startswith("a.jsonl@")
    assert "boom at line 1501" in failed[0]["error"]
    assert not (tmp_path / "out" / failed[0]["key"]).with_suffix(".jsonl").exists()
    src2 = _rows(tmp_path / "in2", rows=2000)
    lines = (src2 / "a.jsonl").read_text().splitlines()
    lines[1700] = "{not json"
    (src2 / "a.jsonl").write_text("\n".join(lines) + "\n")
    bad = _run(src2, tmp_path / "out2", "--rows-per-item", "200")
    assert bad.returncode == 2, bad.stderr
    assert f"{src2 / 'a.jsonl'}:1701: not a JSON row" in bad.stderr


def test_a_row_that_is_not_a_dict_fails_naming_what_to_return(tmp_path):
    src = _rows(tmp_path / "in", rows=50, wrong=3)
    proc = _run(src, tmp_path / "out")
    assert proc.returncode == 1
    assert "process returned a list" in failures(tmp_path / "logs")[0]["error"]


def test_a_packed_output_needs_a_row_input(tmp_path):
    src = _rows(tmp_path / "in", rows=10)
    files = dispatch_here(
        TASK, "FilesNotRows", "--mixin", f"input={src}", f"output={tmp_path / 'o'}"
    )
    assert files.returncode == 2 and "packs the rows a row input mode reads" in files.stderr
    parquet_gz = dispatch_here(TASK, "Upper", "--mixin", f"input={src}", f"output={tmp_path / 'o'}",
                               "output_mode.format=parquet", "output_mode.compression=gzip")  # fmt: skip
    assert parquet_gz.returncode == 2 and "only a jsonl part is compressed" in parquet_gz.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_kill_resumes_at_the_unfinished_parts(tmp_path):
    src = _rows(tmp_path / "in", rows=4000)
    out = tmp_path / "out"
    rng = random.Random(int(os.environ.get("DISPATCH_TEST_SEED", "5")))
    args = [TASK, "Upper", "--backbone", "mp", "--rows-per-item", "250", "--log-dir", tmp_path / "logs",
            "--mixin", f"input={src}", f"output={out}"]  # fmt: skip
    job = start_dispatch(*args, env={"PACKED_PAUSE": "0.001"}, start_new_session=True)
    time.sleep(rng.uniform(1.5, 3.0))
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    made = {p.name: p.stat().st_mtime_ns for p in out.glob("a.jsonl@*.jsonl")}
    rerun = run_dispatch(*args)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("a.jsonl@*.jsonl")}
    assert all(after[name] == made[name] for name in made)  # made parts were not made again
    assert _joined(out, "a.jsonl") == _expected(src, "a.jsonl")
    assert not [p for p in out.rglob(".*") if "dispatch-part" in p.name]


TORCH = {"serial": [], "torch": ["--device", "cpu", "--num-workers", "0"],
         "torch-workers": ["--device", "cpu", "--num-workers", "2"]}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(TORCH))
def test_a_torch_task_batches_rows_across_items_into_the_same_parts(tmp_path, engine):
    pytest.importorskip("torch")
    src = _rows(tmp_path / "in", rows=1000, boom=555)
    sizes = tmp_path / "sizes"
    backbone = "serial" if engine == "serial" else "torch"
    proc = _run(src, tmp_path / "out", "--rows-per-item", "100", "--batch-size", "64",
                *TORCH[engine], backbone=backbone, cls="TorchUpper",
                env={"PACKED_BATCHES": str(sizes)})  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the range holding line 556 failed to load
    failed = failures(tmp_path / "logs")
    assert len(failed) == 1 and "boom at line 556" in failed[0]["error"]
    out = tmp_path / "out"
    expected = []
    for line, raw in enumerate((src / "a.jsonl").read_text().splitlines(), 1):
        row = json.loads(raw)
        if not row.get("drop"):
            expected.append({"id": row["id"], "twice": 2 * len(row["text"]), "line": line})
    made = [
        json.loads(x)
        for p in sorted(out.glob("a.jsonl@*.jsonl"))
        for x in p.read_text().splitlines()
    ]
    failed_range = failed[0]["key"]
    assert not (out / (failed_range + ".jsonl")).exists()
    assert len(made) < len(expected) and all(row in expected for row in made)
    assert [r for r in expected if r in made] == made  # in order
    b = [json.loads(x) for x in (out / "sub" / "b.jsonl.jsonl").read_text().splitlines()]
    assert [r["id"] for r in b] == list(range(5))
    batches = [int(x) for x in sizes.read_text().split()]
    if engine != "serial":  # rows of several items in one batch: full batches but the last
        assert all(n == 64 for n in batches[:-1]) and len(batches) < 16
    again = _run(src, out, "--rows-per-item", "100", "--batch-size", "64", *TORCH[engine],
                 backbone=backbone, cls="TorchUpper")  # fmt: skip
    assert again.returncode == 1 and "ran 1 (0 ok, 1 failed)" in again.stderr


@pytest.mark.slow
def test_process_returning_rows_packs_them(tmp_path):
    pytest.importorskip("torch")
    src = _rows(tmp_path / "in", rows=300)
    proc = _run(src, tmp_path / "out", "--rows-per-item", "50", "--device", "cpu",
                backbone="torch", cls="TorchProcess")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    made = [
        json.loads(x)
        for p in sorted((tmp_path / "out").glob("a.jsonl@*.jsonl"))
        for x in p.read_text().splitlines()
    ]
    rows = [json.loads(x) for x in (src / "a.jsonl").read_text().splitlines()]
    assert made == [{"id": r["id"], "text": r["text"].upper()} for r in rows]


@pytest.mark.slow
def test_a_killed_torch_run_resumes_at_the_unfinished_parts(tmp_path):
    pytest.importorskip("torch")
    src = _rows(tmp_path / "in", rows=3000)
    reference = _run(src, tmp_path / "ref", "--rows-per-item", "150", cls="TorchUpper")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "out"
    args = [TASK, "TorchUpper", "--backbone", "torch", "--device", "cpu", "--num-workers", "1",
            "--batch-size", "32", "--rows-per-item", "150", "--log-dir", tmp_path / "logs",
            "--mixin", f"input={src}", f"output={out}"]  # fmt: skip
    job = start_dispatch(*args, env={"PACKED_PAUSE": "0.002"}, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(out.glob("a.jsonl@*.jsonl"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    made = len(list(out.glob("a.jsonl@*.jsonl")))
    assert 3 <= made < len(list((tmp_path / "ref").glob("a.jsonl@*.jsonl")))
    rerun = run_dispatch(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert tree(out) == tree(tmp_path / "ref")
