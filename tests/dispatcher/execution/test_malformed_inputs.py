"""Malformed input (`dispatcher.MalformedInput`): the item writes nothing and is not retried,
the other items run, and the run exits 2 naming each bad input, on every backbone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import run_dispatch, write_file

TASK = """
import json, os
from dispatcher import MalformedInput, Task, atomic_write


class BadRow(MalformedInput):
    \"\"\"A task's own kind of malformed input: malformed input all the same.\"\"\"


class Unrelated:
    class MalformedInput(ValueError):
        \"\"\"Only named like dispatcher's: an ordinary failure.\"\"\"


class Rows(Task):
    mixin = {"n": 30, "out": "out", "bad": "", "boom": "", "sub": "", "lookalike": ""}

    def generate_tasks(self):
        return [{"i": i} for i in range(self.mixin.n)]

    def is_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i}.json"))

    def process(self, i):
        if str(i) in str(self.mixin.bad).split("+"):
            raise MalformedInput(f"rows.jsonl:{i + 1}: not a JSON row")
        if str(i) in str(self.mixin.boom).split("+"):
            raise RuntimeError(f"boom {i}")
        if str(i) in str(self.mixin.sub).split("+"):
            raise BadRow(f"rows.jsonl:{i + 1}: not a JSON row either")
        if str(i) in str(self.mixin.lookalike).split("+"):
            raise Unrelated.MalformedInput(f"looks bad {i}")
        with atomic_write(os.path.join(self.mixin.out, f"{i}.json")) as tmp:
            with open(tmp, "w") as fh:
                json.dump(i, fh)
"""


def _run(tmp_path: Path, backbone: str, *mixin: str):
    task = write_file(tmp_path / "rows.py", TASK)
    options = {
        "serial": [], "mp": ["--num-process", "2"], "torch": ["--device", "cpu"],
        "devices": ["--devices", "cpu,cpu", "--num-workers", "1"],
    }[backbone]  # fmt: skip
    engine = "torch" if backbone == "devices" else backbone
    return run_dispatch(
        task, "Rows", "--backbone", engine, *options, "--retries", "2",
        "--log-dir", tmp_path / "logs", "--mixin", f"out={tmp_path / 'out'}", *mixin,
        cwd=tmp_path,
    )  # fmt: skip


def _record(tmp_path: Path) -> dict:
    records = sorted((tmp_path / "logs").rglob("run.json"))
    return json.loads(records[-1].read_text())


@pytest.mark.parametrize("backbone", ["serial", "mp", "torch"])
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
    record = _record(tmp_path)
    assert record["exit_code"] == 2 and record["outcome"] == "malformed input"
    assert record["counts"]["malformed_inputs"] == 2 and record["counts"]["failed"] == 3
    failures = [
        json.loads(line) for line in next((tmp_path / "logs").rglob("failures.jsonl")).open()
    ]
    assert sorted(f["item"]["i"] for f in failures) == [3, 5, 17]


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
    assert _record(tmp_path)["counts"]["malformed_inputs"] == 1


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
    assert "malformed_inputs" not in _record(tmp_path)["counts"]


LOADING = """
import json, os
import torch
from dispatcher import MalformedInput, Placeholder, TorchTask, atomic_write


class BadFile(MalformedInput):
    pass


class Unrelated:
    class MalformedInput(ValueError):
        pass


class Loads(TorchTask):
    \"\"\"Items whose loading (in a DataLoader worker) raises.\"\"\"

    mixin = {"out": Placeholder(str), "sub": Placeholder(int, default=-1),
             "lookalike": Placeholder(int, default=-1)}

    def generate_tasks(self):
        return [{"i": i} for i in range(8)]

    def is_each_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i}.json"))

    def load_data(self, i):
        if i == self.mixin.sub:
            raise BadFile(f"file{i}.bin: truncated")
        if i == self.mixin.lookalike:
            raise Unrelated.MalformedInput(f"looks bad {i}")
        return {"x": torch.tensor([float(i)])}

    def inference(self, device, batch_size, i, x, **batch):
        return x

    def postprocess_each(self, batch_idx, batch_size, i, x, result):
        i = int(i)
        with atomic_write(os.path.join(self.mixin.out, f"{i}.json")) as tmp, open(tmp, "w") as fh:
            json.dump(i, fh)
"""


@pytest.mark.parametrize("devices", [["--device", "cpu"], ["--devices", "cpu,cpu"]])
@pytest.mark.parametrize("raised", ["sub", "lookalike"])
def test_malformed_input_is_told_by_type_in_dataloader_workers(tmp_path, devices, raised):
    pytest.importorskip("torch")
    task = write_file(tmp_path / "loads.py", LOADING)
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
    assert _record(tmp_path)["counts"]["malformed_inputs"] == 25


def test_python_callers_see_exit_code_2(tmp_path):
    import subprocess
    import sys

    task, out, logs = write_file(tmp_path / "rows.py", TASK), tmp_path / "out", tmp_path / "logs"
    code = (
        f"import dispatcher; r = dispatcher.run(({str(task)!r}, 'Rows'), "
        f"{{'out': {str(out)!r}, 'n': 4, 'bad': '2'}}, backbone='serial', log_dir={str(logs)!r}); "
        "print(r.exit_code, r.ok)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.stdout.split() == ["2", "False"], proc.stderr
