"""Malformed input (`dispatcher.MalformedInput`): the item writes nothing and is not retried,
the other items run, and the run exits 2 naming each bad input, on every backbone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import backbone_params, failures, run_dispatch, run_record, task_file

ROWS = task_file("malformed_rows")


def _run(tmp_path: Path, backbone: str, *mixin: str):
    options = {
        "serial": [], "mp": ["--num-process", "2"], "torch": ["--device", "cpu"],
        "devices": ["--devices", "cpu,cpu", "--num-workers", "1"], "ray": ["--num-actors", "2"],
    }[backbone]  # fmt: skip
    engine = "torch" if backbone == "devices" else backbone
    return run_dispatch(
        ROWS, "Rows", "--backbone", engine, *options, "--retries", "2",
        "--log-dir", tmp_path / "logs", "--mixin", f"out={tmp_path / 'out'}", *mixin,
        cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize("backbone", ["serial", "mp", "torch", *backbone_params(["ray"])])
def test_malformed_inputs_exit_2_after_the_other_items_ran(tmp_path, backbone):
    proc = _run(tmp_path, backbone, "bad=3+17", "boom=5")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert sorted(errors) == [
        "dispatch: error: rows.jsonl:18: not a JSON row",
        "dispatch: error: rows.jsonl:4: not a JSON row",
    ]
    # The task's own failure is retried and listed as a failure; the bad inputs are not.
    assert 'retrying {"i":5} (1/2)' in proc.stderr and 'retrying {"i":3}' not in proc.stderr
    assert 'dispatch: failed {"i":5}: RuntimeError: boom 5 (failed 3 attempts)' in proc.stderr
    made = sorted(int(p.stem) for p in (tmp_path / "out").iterdir())
    assert made == [i for i in range(30) if i not in (3, 5, 17)]
    record = run_record(tmp_path / "logs")
    assert record["exit_code"] == 2 and record["outcome"] == "malformed input"
    assert record["counts"]["malformed_inputs"] == 2 and record["counts"]["failed"] == 3
    assert sorted(f["item"]["i"] for f in failures(tmp_path / "logs")) == [3, 5, 17]


def _engines(*names: str) -> list:
    """Engines as test parameters; `torch` and `devices` (`--devices cpu,cpu`) need torch."""
    skip = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
    return [pytest.param(n, marks=skip) if n in ("torch", "devices") else n for n in names]


def _errors(proc) -> list[str]:
    return sorted(line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:"))


@pytest.mark.parametrize("backbone", _engines("serial", "mp", "torch", "devices"))
def test_a_subclass_of_malformed_input_is_malformed_input(tmp_path, backbone):
    proc = _run(tmp_path, backbone, "n=8", "sub=3")
    assert proc.returncode == 2, proc.stderr
    assert _errors(proc) == ["dispatch: error: rows.jsonl:4: not a JSON row either"]
    assert "retrying" not in proc.stderr
    assert sorted(int(p.stem) for p in (tmp_path / "out").iterdir()) == [0, 1, 2, 4, 5, 6, 7]
    assert run_record(tmp_path / "logs")["counts"]["malformed_inputs"] == 1


@pytest.mark.parametrize("backbone", _engines("serial", "mp", "torch", "devices"))
def test_a_class_only_named_malformed_input_is_an_ordinary_failure(tmp_path, backbone):
    proc = _run(tmp_path, backbone, "n=8", "lookalike=5")
    assert proc.returncode == 1, proc.stderr
    assert not _errors(proc)
    assert 'retrying {"i":5} (2/2): MalformedInput: looks bad 5' in proc.stderr
    assert (
        'dispatch: failed {"i":5}: MalformedInput: looks bad 5 (failed 3 attempts)' in proc.stderr
    )
    assert sorted(int(p.stem) for p in (tmp_path / "out").iterdir()) == [0, 1, 2, 3, 4, 6, 7]
    assert "malformed_inputs" not in run_record(tmp_path / "logs")["counts"]


@pytest.mark.parametrize("devices", [["--device", "cpu"], ["--devices", "cpu,cpu"]])
@pytest.mark.parametrize("raised", ["sub", "lookalike"])
def test_malformed_input_is_told_by_type_in_dataloader_workers(tmp_path, devices, raised):
    pytest.importorskip("torch")
    task = task_file("malformed_loading")
    proc = run_dispatch(
        task, "Loads", "--backbone", "torch", *devices, "--num-workers", "1", "--batch-size", "2",
        "--retries", "1", "--mixin", f"out={tmp_path / 'out'}", f"{raised}=3", cwd=tmp_path,
    )  # fmt: skip
    made = sorted(int(p.stem) for p in (tmp_path / "out").iterdir())
    assert made == [0, 1, 2, 4, 5, 6, 7]
    if raised == "sub":
        assert proc.returncode == 2, proc.stderr
        assert _errors(proc) == ["dispatch: error: file3.bin: truncated"]
        assert "retrying" not in proc.stderr
    else:
        assert proc.returncode == 1, proc.stderr
        assert not _errors(proc)
        assert 'retrying {"i":3} (1/1): MalformedInput: looks bad 3' in proc.stderr


def test_many_malformed_inputs_are_named_up_to_twenty_and_counted(tmp_path):
    proc = _run(tmp_path, "serial", "bad=" + "+".join(map(str, range(25))))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert len(errors) == 20
    assert "dispatch: ... and 5 more malformed inputs" in proc.stderr
    assert run_record(tmp_path / "logs")["counts"]["malformed_inputs"] == 25


def test_python_callers_see_exit_code_2(tmp_path):
    import subprocess
    import sys

    task, out, logs = ROWS, tmp_path / "out", tmp_path / "logs"
    code = (
        f"import dispatcher; r = dispatcher.run(({str(task)!r}, 'Rows'), "
        f"{{'out': {str(out)!r}, 'n': 4, 'bad': '2'}}, backbone='serial', log_dir={str(logs)!r}); "
        "print(r.exit_code, r.ok)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.stdout.split() == ["2", "False"], proc.stderr
