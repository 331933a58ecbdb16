"""Third-party adapters: a package registers a task style under `dispatcher.adapters`.

The adapter here accepts classes that are not `Task`s at all (callables marked
`__batch_operator__`), and runs them as a batched CPU stage: the loader, the plan and
every backbone take it unchanged. `mp` hands it a chunk as one batch.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from conftest import installed_package, run_dispatch, task_file, write_file

OPERATORS = task_file("adapters_batch_operators")

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"

[project.entry-points."dispatcher.adapters"]
batch-operator = "{module}:BatchOperatorStage"

[tool.setuptools]
py-modules = ["{module}"]
"""


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):
    suffix = uuid.uuid4().hex[:8]
    module, dist = f"dispatch_batch_adapter_{suffix}", f"dispatch-test-adapter-{suffix}"
    root = tmp_path_factory.mktemp("adapter")
    write_file(root / "pyproject.toml", PYPROJECT.format(dist=dist, module=module))
    shutil.copy(task_file("adapters_batch_stage"), root / f"{module}.py")
    with installed_package(root, dist):
        yield module


@pytest.fixture
def texts(tmp_path):
    data = tmp_path / "texts"
    data.mkdir()
    for i in range(7):
        (data / f"t{i}.txt").write_text(f"text {i}")
    return data


BACKBONES = {
    "serial": ["--batch-size", "4"],
    "mp": ["--num-process", "2", "--chunksize", "3"],
    "torch": ["--device", "cpu", "--num-workers", "1", "--batch-size", "4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_a_class_that_is_not_a_task_runs_through_an_installed_adapter(
    adapter, texts, tmp_path, backbone
):
    operator = OPERATORS
    out = tmp_path / "out"
    command = [
        str(operator),
        "Upper",
        "--backbone",
        backbone,
        *BACKBONES[backbone],
        "--log-dir",
        str(tmp_path / "logs"),
        "--mixin",
        f"input={texts}",
        f"output={out}",
    ]
    proc = run_dispatch(*command, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = {p.name: json.loads(p.read_text()) for p in sorted(out.iterdir())}
    assert {name: r["result"] for name, r in records.items()} == {
        f"t{i}.txt.json": f"TEXT {i}" for i in range(7)
    }
    sizes = [r["batch"] for r in records.values()]
    if backbone == "mp":  # a chunk is one batch
        assert max(sizes) <= 3 and max(sizes) > 1
    else:
        assert sorted(sizes) == [3, 3, 3, 4, 4, 4, 4]
    again = run_dispatch(*command, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr


@pytest.mark.slow
def test_a_class_no_adapter_claims_is_refused_naming_the_task_classes(adapter, tmp_path):
    operator = OPERATORS
    proc = run_dispatch(str(operator), "Unclaimed", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        "'Unclaimed' in" in proc.stderr
        and "(task classes there: Crashes, NoModel, Upper)" in proc.stderr
    )


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_a_stage_that_cannot_compute_stops_the_run_with_nothing_written(
    adapter, texts, tmp_path, backbone
):
    operator = OPERATORS
    out = tmp_path / "out"
    proc = run_dispatch(
        str(operator),
        "NoModel",
        "--backbone",
        backbone,
        *BACKBONES[backbone],
        "--log-dir",
        str(tmp_path / "logs"),
        "--mixin",
        f"input={texts}",
        f"output={out}",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "load_model failed: the model is missing" in proc.stderr
    assert "not run 7" in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_batch_that_kills_its_worker_fails_only_the_item_that_does(adapter, texts, tmp_path):
    operator = OPERATORS
    out = tmp_path / "out"
    proc = run_dispatch(
        str(operator),
        "Crashes",
        "--backbone",
        "mp",
        *BACKBONES["mp"],
        "--log-dir",
        str(tmp_path / "logs"),
        "--mixin",
        f"input={texts}",
        f"output={out}",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"t{i}.txt.json" for i in range(7) if i != 4]
    assert "failed t4.txt: WorkerDied" in proc.stderr
    assert "(6 ok, 1 failed)" in proc.stderr
