"""The stage contract: every (backbone, task style) pair runs correctly or is refused with
exit 2 before anything is written; serial runs torch tasks in-process; backbones reach
tasks only through the core's execution functions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, dispatch_here, run_dispatch, task_file, tree, write_file

import dispatcher
from dispatcher.errors import UsageError
from dispatcher.stage import Stage

TEMPLATED = {"CpuTemplate", "TorchTemplate"}
TORCH = {"TorchItems", "TorchTemplate", "TorchDataset", "TorchLoader"}
STYLE_NAMES = ["Plain", "CpuTemplate", "TorchItems", "TorchTemplate", "TorchDataset", "TorchLoader"]


@pytest.fixture
def styles(tmp_path):
    path = task_file("stage_styles")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        (data / f"{name}.txt").write_text(name * 3)
    return path


def _mixin(style: str, tmp_path: Path) -> list[str]:
    out = f"output={tmp_path / 'out'}"
    return [f"input={tmp_path / 'data'}", out] if style in TEMPLATED else [out]


def _backbone_options(backbone: str) -> list[str]:
    return {
        "serial": [],
        "mp": ["--num-process", "2"],
        "torch": ["--device", "cpu", "--num-workers", "0"],
    }[backbone]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["serial", "mp", "torch"])
@pytest.mark.parametrize("style", STYLE_NAMES)
def test_every_backbone_runs_every_style_or_refuses_it_before_writing(
    styles, tmp_path, backbone, style
):
    logs = tmp_path / "logs"
    args = [
        str(styles),
        style,
        "--backbone",
        backbone,
        *_backbone_options(backbone),
        "--log-dir",
        str(logs),
        "--mixin",
        *_mixin(style, tmp_path),
    ]
    proc = run_dispatch(*args, cwd=tmp_path)
    out = tmp_path / "out"
    if backbone == "mp" and style in TORCH:
        assert proc.returncode == 2, proc.stderr
        assert re.search(r"backbone 'mp' cannot run \w+: .*--backbone torch", proc.stderr)
        assert not out.exists() and not logs.exists()
        return
    assert proc.returncode == 0, proc.stderr
    made = sorted(name.split(".")[0] for name in tree(out))
    assert made == ["a", "b", "c", "d", "e"]
    again = run_dispatch(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    if style != "TorchDataset" and style != "TorchLoader":
        assert "nothing to do" in again.stderr
    else:  # rows known once loaded: the plan's check finds them done batch by batch
        assert "nothing to do" not in again.stderr
        assert all(json.loads(p.read_text())["pid"] for p in out.iterdir())


def test_serial_runs_a_torch_task_in_this_process(styles, tmp_path):
    for style in ("TorchItems", "TorchLoader"):
        out = tmp_path / style
        result = dispatcher.run(
            f"{styles}:{style}",
            {"output": str(out)},
            backbone="serial",
            log_dir=tmp_path / "logs",
        )
        assert result.exit_code == 0 and result.counts.succeeded == (
            5 if style == "TorchItems" else 1
        )
        pids = {json.loads(p.read_text())["pid"] for p in out.iterdir()}
        assert pids == {os.getpid()}


def test_serial_batches_a_torch_task_by_batch_size(tmp_path):
    task = task_file("stage_serial")
    out = tmp_path / "out"
    result = dispatcher.run(
        f"{task}:Sizes",
        {"output": str(out)},
        backbone="serial",
        options={"batch_size": 3},
        log_dir=tmp_path / "logs",
    )
    assert result.exit_code == 0
    sizes = [json.loads((out / f"{i}.json").read_text())["size"] for i in range(7)]
    assert sizes == [3, 3, 3, 3, 3, 3, 1]
    assert json.loads((out / "0.json").read_text())["device"] == "cpu"


@pytest.mark.slow
def test_image_embed_serial_gives_the_embeddings_of_torch_cpu(tmp_path):
    images = REPO / "tasks" / "data" / "images"
    outputs = {}
    for backbone, extra in (("serial", []), ("torch", ["--device", "cpu", "--num-workers", "1"])):
        out = tmp_path / backbone
        proc = run_dispatch(
            str(REPO / "tasks" / "image_embed.py"),
            "ImageEmbed",
            "--backbone",
            backbone,
            *extra,
            "--log-dir",
            str(tmp_path / "logs"),
            "--mixin",
            f"input={images}",
            f"output={out}",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        outputs[backbone] = {
            str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))
        }
    assert outputs["serial"] and outputs["serial"].keys() == outputs["torch"].keys()
    for name, record in outputs["serial"].items():
        other = outputs["torch"][name]
        assert record["phash"] == other["phash"] and record["width"] == other["width"]
        assert record["embedding"] == pytest.approx(other["embedding"], abs=1e-5)


def test_serial_retries_and_times_out_items(tmp_path):
    task = task_file("stage_serial")
    state = tmp_path / "state"
    state.mkdir()
    result = dispatcher.run(
        f"{task}:Flaky",
        {"state": str(state)},
        backbone="serial",
        options={"retries": 1, "timeout": 0.5},
        log_dir=tmp_path / "logs",
    )
    assert result.exit_code == 1
    by_key = {json.loads(o.key)["name"]: o for o in result.outcomes}
    assert by_key["once"].ok and by_key["fine"].ok
    assert not by_key["stuck"].ok
    assert "ItemTimeout" in by_key["stuck"].error and "2 attempts" in by_key["stuck"].error
    assert (state / "once").read_text() == "2" and (state / "stuck").read_text() == "2"


def test_a_torch_task_without_a_compute_mode_is_refused_on_every_backbone(tmp_path):
    task = task_file("stage_serial")
    for backbone in ("serial", "torch", "auto"):
        proc = run_dispatch(str(task), "Half", "--backbone", backbone, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "implements neither inference() with postprocess_each()" in proc.stderr
    assert not (tmp_path / "dispatch-logs").exists()


def test_backbones_reach_tasks_only_through_the_stage():
    """No engine asks whether an item is done, stages outputs, or reads a task's own state:
    the plan and the core's execution functions do."""
    forbidden = re.compile(
        r"is_executed|is_each_executed|\.staged\(|\.claim_all\(|__dict__|"
        r"load_model|postprocess_each\(|\.postprocess\(|\.inference\(|WHOLE_RUN_KEY|\bTorchTask\b"
    )
    for path in sorted((REPO / "backbones").rglob("*.py")):  # the engine packages too
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.strip().startswith(('"', "'")):
                continue
            assert not forbidden.search(code), f"{path.name}:{number}: {line.strip()}"


def test_a_class_no_adapter_claims_is_a_usage_error(tmp_path):
    task = write_file(tmp_path / "other.py", "class Thing:\n    pass\n")
    proc = dispatch_here(str(task), "Thing", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'Thing' in" in proc.stderr and "is not a task class" in proc.stderr
    with pytest.raises(UsageError, match="not a task class"):
        dispatcher.run(int, {})


@pytest.mark.parametrize("backbone", ["torch", "serial"])
def test_retries_rerun_failed_items_of_a_torch_task(tmp_path, backbone):
    task = task_file("stage_serial")
    state = tmp_path / "state"
    state.mkdir()
    options = {"retries": 1, "batch_size": 2}
    if backbone == "torch":
        options.update(device="cpu", num_workers=1)
    result = dispatcher.run(
        f"{task}:FlakyTorch",
        {"state": str(state)},
        backbone=backbone,
        options=options,
        log_dir=tmp_path / "logs",
    )
    by_name = {json.loads(o.key)["name"]: o for o in result.outcomes}
    assert result.exit_code == 1
    assert [n for n, o in sorted(by_name.items()) if o.ok] == ["a", "b", "c"]
    assert "d fails (failed 2 attempts)" in by_name["d"].error
    assert {n: (state / n).read_text() for n in "abcd"} == {"a": "2", "b": "1", "c": "1", "d": "2"}
    assert len(result.outcomes) == 4  # one outcome per item, however often it ran


def test_an_adapter_that_still_says_claims_is_asked_by_accepts():
    """Adapters written when the methods were `claims` / `claims_path` keep working."""

    class Older(Stage):
        @classmethod
        def claims(cls, obj: type) -> bool:
            return obj is int

        @classmethod
        def claims_path(cls, path: str) -> bool:
            return path == "/operators/pkg"

    assert Older.accepts(int) and not Older.accepts(str)
    assert Older.accepts_path("/operators/pkg") and not Older.accepts_path("/elsewhere")
    assert not Stage.accepts(int) and not Stage.accepts_path("/operators/pkg")
