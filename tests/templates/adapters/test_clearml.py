"""ClearML-serving `Preprocess` classes run unchanged over JSONL files (a file per item)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    REPO,
    backbone_params,
    failures,
    run_dirs,
    run_dispatch,
    run_record,
    task_file,
    tree,
    write_file,
)

EXAMPLE = REPO / "tasks" / "operators" / "clearml_example"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _direct(input_root: Path, model: Path) -> dict[str, bytes]:
    """The example called directly, row by row, as the serving engine would."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "clearml_example_direct", EXAMPLE / "preprocess.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    op = module.Preprocess()
    op.load(str(model))
    out = {}
    for path in sorted(input_root.rglob("*.jsonl")):
        lines = []
        for line in path.read_text().splitlines():
            state = {}
            data = op.preprocess(json.loads(line), state, None)
            data = op.process(data, state, None)
            lines.append(json.dumps(op.postprocess(data, state, None), ensure_ascii=False) + "\n")
        out[path.relative_to(input_root).as_posix()] = "".join(lines).encode()
    return out


def _example_args(out: Path, logs: Path, *more: str) -> list[str]:
    return [
        str(EXAMPLE / "preprocess.py"),
        "Preprocess",
        "--log-dir",
        str(logs),
        *more,
        "--mixin",
        f"input={EXAMPLE / 'data'}",
        f"output={out}",
        f"model={EXAMPLE / 'model.json'}",
    ]


BACKBONES = {
    "serial": [],
    "mp": ["--num-process", "2"],
    "torch": ["--device", "cpu", "--num-workers", "1"],
    "ray": ["--num-actors", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", backbone_params(BACKBONES))
def test_the_example_writes_one_row_per_input_row_and_reruns_nothing(tmp_path, backbone):
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = _example_args(out, logs, "--backbone", backbone, *BACKBONES[backbone])
    proc = run_dispatch(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == _direct(EXAMPLE / "data", EXAMPLE / "model.json")
    record = run_record(logs)
    rows = sum(len(_rows(p)) for p in (EXAMPLE / "data").rglob("*.jsonl"))
    tokens = record["statistics"]["tokens"]
    assert tokens["count"] == rows and tokens["sum"] == 6 * rows
    assert tokens["min"] == tokens["max"] == tokens["mean"] == 6
    assert sum(record["statistics"]["label"]["values"].values()) == rows
    assert f"statistics: tokens: n={rows} sum={6 * rows}" in proc.stderr
    again = run_dispatch(*args, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


@pytest.mark.slow
def test_shards_of_the_example_make_one_full_run(tmp_path):
    rows = (EXAMPLE / "data" / "reviews.jsonl").read_text().splitlines()
    data = tmp_path / "data"
    for i in range(6):  # six files: enough for two shards to split them
        write_file(data / f"part{i}.jsonl", "\n".join(rows[i : i + 4]) + "\n")

    def args(out: Path, *more: str) -> list[str]:
        return [
            str(EXAMPLE / "preprocess.py"),
            "Preprocess",
            "--log-dir",
            str(tmp_path / "logs"),
            *more,
            "--mixin",
            f"input={data}",
            f"output={out}",
            f"model={EXAMPLE / 'model.json'}",
        ]

    full = tmp_path / "full"
    assert run_dispatch(*args(full), cwd=tmp_path).returncode == 0
    assert tree(full) == _direct(data, EXAMPLE / "model.json")
    made: list[set[str]] = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        proc = run_dispatch(*args(out, "--shard", f"{i}/2"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        made.append(set(tree(out)))
    assert made[0] and made[1] and not made[0] & made[1]
    union = {**tree(tmp_path / "shard0"), **tree(tmp_path / "shard1")}
    assert union == tree(full)


def _inputs(root: Path, boom_at: tuple[str, int] | None = None) -> Path:
    data = root / "in"
    for name, count in (("a.jsonl", 5), ("sub/b.jsonl", 4)):
        lines = []
        for n in range(count):
            row = {"n": n}
            if n == 1:
                row["kind"] = "twice"
            if boom_at == (name, n):
                row["boom"] = True
            lines.append(json.dumps(row))
        write_file(data / name, "\n".join(lines) + "\n")
    return data


def test_a_preprocess_class_runs_as_the_serving_engine_calls_it(tmp_path):
    op = task_file("operators_clearml_rows")
    data, out, logs = _inputs(tmp_path), tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={data}",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out / "a.jsonl")
    assert [r["n"] for r in rows] == [0, 1, 2, 3, 4] and [r["state"] for r in rows] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert {r["model"] for r in rows} == {None}  # load(None): no model configured
    assert {r["instance"] for r in rows + _rows(out / "sub" / "b.jsonl")} == {1}  # once per worker
    stats = run_record(logs)["statistics"]
    assert stats["n"] == {"count": 9, "sum": 16, "min": 0, "max": 4, "mean": 16 / 9}
    # one request's calls update one dict: the last value of a key counts, once
    assert stats["kind"]["values"] == {"plain": 7, "last-wins": 2}


def test_load_gets_the_model_path(tmp_path):
    op = task_file("operators_clearml_rows")
    model = write_file(tmp_path / "model.bin", "weights")
    data, out = _inputs(tmp_path), tmp_path / "out"
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        tmp_path / "logs",
        "--mixin",
        f"input={data / 'a.jsonl'}",
        f"output={out}",
        "model=model.bin",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(tree(out)) == ["a.jsonl"]  # one input file: its name under the output root
    assert {r["model"] for r in _rows(out / "a.jsonl")} == {str(model)}


def test_a_failing_row_fails_its_file_naming_the_line(tmp_path):
    op = task_file("operators_clearml_rows")
    data, out, logs = (
        _inputs(tmp_path, boom_at=("sub/b.jsonl", 2)),
        tmp_path / "out",
        tmp_path / "logs",
    )
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={data}",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert sorted(tree(out)) == ["a.jsonl"]  # the failing file left nothing at its path
    failed = failures(logs)
    assert [f["key"] for f in failed] == ["sub/b.jsonl"]
    assert f"{data / 'sub' / 'b.jsonl'}:3: ValueError: boom at 2" in failed[0]["error"]


def test_skip_failed_rows_leaves_them_out_and_lists_each(tmp_path):
    op = task_file("operators_clearml_rows")
    data, out, logs = (
        _inputs(tmp_path, boom_at=("sub/b.jsonl", 2)),
        tmp_path / "out",
        tmp_path / "logs",
    )
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={data}",
        f"output={out}",
        "skip_failed_rows=true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["n"] for r in _rows(out / "sub" / "b.jsonl")] == [0, 1, 3]
    run_dir = run_dirs(logs)[-1]
    skipped = [
        json.loads(line) for line in (run_dir / "skipped_rows.jsonl").read_text().splitlines()
    ]
    assert [s["row"] for s in skipped] == [f"{data / 'sub' / 'b.jsonl'}:3"]
    assert "ValueError: boom at 2" in skipped[0]["error"] and "Traceback" in skipped[0]["traceback"]
    stats = json.loads((run_dir / "run.json").read_text())["statistics"]
    assert stats["_skipped_rows"]["sum"] == 1


@pytest.mark.parametrize("skip", [False, True])
def test_a_line_that_is_not_json_is_malformed_input_unless_rows_are_skipped(tmp_path, skip):
    op = task_file("operators_clearml_rows")
    data, out, logs = _inputs(tmp_path), tmp_path / "out", tmp_path / "logs"
    bad = data / "sub" / "b.jsonl"
    bad.write_text(bad.read_text().replace('{"n": 2}', '{"n": 2'))
    extra = ["skip_failed_rows=true"] if skip else []
    proc = run_dispatch(
        op, "Preprocess", "--backbone", "mp", "--num-process", "2", "--retries", "1",
        "--log-dir", logs, "--mixin", f"input={data}", f"output={out}", *extra, cwd=tmp_path,
    )  # fmt: skip
    if skip:
        assert proc.returncode == 0, proc.stderr
        assert [r["n"] for r in _rows(out / "sub" / "b.jsonl")] == [0, 1, 3]
        return
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"dispatch: error: {bad}:3: not a JSON row")
    assert "retrying" not in proc.stderr
    assert sorted(tree(out)) == ["a.jsonl"]


def test_send_request_says_it_is_not_available_in_batch_mode(tmp_path):
    op = task_file("operators_clearml_sender")
    data, out, logs = _inputs(tmp_path), tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={data}",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "send_request('other_model') is not available in batch mode" in proc.stderr
    assert not out.exists() or tree(out) == {}


def test_a_missing_input_is_refused_before_any_work(tmp_path):
    op = task_file("operators_clearml_rows")
    proc = run_dispatch(
        op,
        "Preprocess",
        "--mixin",
        f"input={tmp_path / 'nope.jsonl'}",
        f"output={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "dispatch: error: mixin 'input':" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_killed_mid_file_leaves_no_output_that_counts_as_done(tmp_path):
    op = task_file("operators_clearml_killer")
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = [
        op,
        "Preprocess",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={EXAMPLE / 'data'}",
        f"output={out}",
        f"model={EXAMPLE / 'model.json'}",
    ]
    # row id 104 is in the middle of more/reviews2.jsonl (the first file in key order)
    env = dict(os.environ, KILL_AT="104")
    env.pop("SLURM_ARRAY_TASK_ID", None)
    killed = subprocess.run(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    reference = _direct(EXAMPLE / "data", EXAMPLE / "model.json")
    for rel, data in tree(out).items() if out.exists() else ():
        if ".dispatch-" in rel:
            continue  # a killed attempt's staging name: never a final path
        assert data == reference[rel], f"{rel} at its final path is incomplete"
    assert not (out / "more" / "reviews2.jsonl").exists()
    again = run_dispatch(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert tree(out) == reference


@pytest.mark.parametrize("backbone", backbone_params(["serial", "mp", "torch"]))
def test_no_statistic_value_changes_the_outcome_and_the_record_is_strict_json(tmp_path, backbone):
    op = task_file("operators_clearml_statistics")
    data, out, logs = _inputs(tmp_path), tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(
        op,
        "Preprocess",
        "--backbone",
        backbone,
        "--log-dir",
        logs,
        "--mixin",
        f"input={data}",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    text = (run_dirs(logs)[-1] / "run.json").read_text()

    def refuse(word):
        raise ValueError(f"not strict JSON: {word}")

    record = json.loads(text, parse_constant=refuse)
    assert record["outcome"] == "success" and record["counts"]["succeeded"] == 2
    stats = record["statistics"]
    assert stats["ok"]["sum"] == 16 and stats["ok"]["count"] == 9
    # A value no float can hold is counted by its text, never summed into an overflow.
    assert stats["nan"]["values"] == {"nan": 9} and stats["inf"]["values"] == {"inf": 9}
    assert sum(stats["huge"]["values"].values()) == 9
    assert stats["big"]["count"] == 9 and stats["big"]["max"] == 1e308
    assert "statistics: ok: n=9 sum=16" in proc.stderr
    assert "big: n=9" in proc.stderr


def test_row_ranges_make_the_file_a_whole_run_makes(tmp_path):
    rows = (EXAMPLE / "data" / "reviews.jsonl").read_text().splitlines()
    data, out, logs = tmp_path / "data", tmp_path / "out", tmp_path / "logs"
    write_file(data / "big.jsonl", "\n".join(rows[i % len(rows)] for i in range(900)) + "\n")
    write_file(data / "small.jsonl", rows[0] + "\n")
    args = [str(EXAMPLE / "preprocess.py"), "Preprocess", "--backbone", "mp",
            "--rows-per-item", "60", "--log-dir", str(logs), "--mixin", f"input={data}",
            f"output={out}", f"model={EXAMPLE / 'model.json'}"]  # fmt: skip
    proc = run_dispatch(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == _direct(data, EXAMPLE / "model.json")
    counts = run_record(logs)["counts"]
    assert counts["found"] > 10  # the big file's ranges and the small file
    assert run_record(logs)["statistics"]["tokens"]["count"] == 901


def test_a_failing_row_in_a_later_range_names_its_line_in_the_file(tmp_path):
    op = task_file("operators_clearml_rows")
    data, out, logs = tmp_path / "in", tmp_path / "out", tmp_path / "logs"
    lines = [json.dumps({"n": n, "boom": n == 250}) for n in range(400)]
    write_file(data / "a.jsonl", "\n".join(lines) + "\n")
    proc = run_dispatch(op, "Preprocess", "--backbone", "serial", "--rows-per-item", "40",
                        "--log-dir", logs, "--mixin", f"input={data}", f"output={out}",
                        cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    failed = failures(logs)
    assert len(failed) == 1 and failed[0]["key"].startswith("a.jsonl@")
    assert f"{data / 'a.jsonl'}:251: ValueError: boom at 250" in failed[0]["error"]
    assert not (out / "a.jsonl").exists()  # the other ranges' parts wait for it
