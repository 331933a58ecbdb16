"""The stage contract: every (backbone, task style) pair runs correctly or is refused with
exit 2 before anything is written; serial runs torch tasks in-process; backbones reach
tasks only through the core's execution functions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, run_dispatch, tree, write_file

import dispatcher
from dispatcher.errors import UsageError

STYLES = """
import json, os
from dispatcher import Placeholder, Task, TorchTask
from templates import InputByExtensions, OutputWithExtension, cpu_task, torch_task

NAMES = ["a", "b", "c", "d", "e"]


def mark(root, name, how):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, name + ".json"), "w") as fh:
        json.dump({"name": name, "how": how, "pid": os.getpid()}, fh)


class Plain(Task):
    mixin = {"output": Placeholder(str)}

    def generate_tasks(self):
        return [{"name": n} for n in NAMES]

    def is_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def process(self, name):
        mark(self.mixin.output, name, "plain")


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class CpuTemplate(Task):
    def process(self, input, output):
        with open(output, "w") as fh:
            json.dump({"text": open(input).read(), "pid": os.getpid()}, fh)


class TorchItems(TorchTask):
    mixin = {"output": Placeholder(str)}

    def generate_tasks(self):
        return [{"name": n} for n in NAMES]

    def is_each_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def load_data(self, name):
        import torch
        return {"x": torch.tensor([float(ord(name))])}

    def inference(self, device, batch_size, x, **batch):
        return x * 2

    def postprocess_each(self, batch_idx, batch_size, name, result, **row):
        mark(self.mixin.output, name, "torch-items")


@torch_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class TorchTemplate(TorchTask):
    def load_data(self, input):
        import torch
        return {"n": torch.tensor([len(open(input).read())])}

    def inference(self, device, batch_size, n, **batch):
        return n + 1

    def postprocess_each(self, batch_idx, batch_size, output, result, **row):
        with open(output, "w") as fh:
            json.dump({"result": int(result), "pid": os.getpid()}, fh)


class RowsDataset:
    def __len__(self):
        return len(NAMES)

    def __getitem__(self, i):
        return {"name": NAMES[i]}


class TorchDataset(TorchTask):
    mixin = {"output": Placeholder(str)}

    def get_dataset(self):
        return RowsDataset()

    def is_each_executed(self, name, **row):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def inference(self, device, batch_size, name, **batch):
        return list(name)

    def postprocess_each(self, batch_idx, batch_size, name, result, **row):
        mark(self.mixin.output, name, "torch-dataset")


class TorchLoader(TorchTask):
    mixin = {"output": Placeholder(str)}

    def get_dataloader(self):
        from torch.utils.data import DataLoader
        return DataLoader(RowsDataset(), batch_size=2, collate_fn=lambda rows: {"name": [r["name"] for r in rows]})

    def is_each_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def inference(self, device, batch_size, name):
        return list(name)

    def postprocess_each(self, batch_idx, batch_size, name, result):
        mark(self.mixin.output, name, "torch-loader")
"""

TEMPLATED = {"CpuTemplate", "TorchTemplate"}
TORCH = {"TorchItems", "TorchTemplate", "TorchDataset", "TorchLoader"}
STYLE_NAMES = ["Plain", "CpuTemplate", "TorchItems", "TorchTemplate", "TorchDataset", "TorchLoader"]


@pytest.fixture
def styles(tmp_path):
    path = write_file(tmp_path / "styles.py", STYLES)
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
    task = write_file(
        tmp_path / "sizes.py",
        """
import json, os
from dispatcher import Placeholder, TorchTask

class Sizes(TorchTask):
    mixin = {"output": Placeholder(str)}

    def generate_tasks(self):
        return [{"i": i} for i in range(7)]

    def load_data(self, i):
        import torch
        return {"x": torch.tensor(float(i))}

    def inference(self, device, batch_size, x, i):
        return [batch_size] * batch_size

    def postprocess_each(self, batch_idx, batch_size, i, x, result):
        os.makedirs(self.mixin.output, exist_ok=True)
        with open(os.path.join(self.mixin.output, f"{int(i)}.json"), "w") as fh:
            json.dump({"size": result, "device": str(x.device)}, fh)
""",
    )
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
    task = write_file(
        tmp_path / "flaky.py",
        """
import os, time
from dispatcher import Placeholder, Task

class Flaky(Task):
    mixin = {"state": Placeholder(str)}

    def generate_tasks(self):
        return [{"name": "once"}, {"name": "stuck"}, {"name": "fine"}]

    def process(self, name):
        path = os.path.join(self.mixin.state, name)
        tries = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as fh:
            fh.write(str(tries + 1))
        if name == "once" and tries == 0:
            raise RuntimeError("first try fails")
        if name == "stuck":
            time.sleep(30)
""",
    )
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
    task = write_file(
        tmp_path / "half.py",
        """
from dispatcher import TorchTask

class Half(TorchTask):
    def generate_tasks(self):
        return [{"i": 1}]

    def inference(self, device, batch_size, **batch):
        return batch
""",
    )
    for backbone in ("serial", "torch", "auto"):
        proc = run_dispatch(str(task), "Half", "--backbone", backbone, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "implements neither inference() with postprocess_each()" in proc.stderr
    assert not (tmp_path / "dispatch-logs").exists()


def test_backbones_reach_tasks_only_through_the_stage():
    """No engine asks whether an item is done, stages outputs, or reads a task's own state:
    the plan and the core's execution functions do."""
    forbidden = re.compile(
        r"is_executed|is_each_executed|staged_outputs|claim_outputs|__dict__|"
        r"load_model|postprocess_each\(|\.postprocess\(|\.inference\(|WHOLE_RUN_KEY|\bTorchTask\b"
    )
    for path in sorted((REPO / "backbones").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.strip().startswith(('"', "'")):
                continue
            assert not forbidden.search(code), f"{path.name}:{number}: {line.strip()}"


def test_a_class_no_adapter_claims_is_a_usage_error(tmp_path):
    task = write_file(tmp_path / "other.py", "class Thing:\n    pass\n")
    proc = run_dispatch(str(task), "Thing", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'Thing' in" in proc.stderr and "is not a task class" in proc.stderr
    with pytest.raises(UsageError, match="not a task class"):
        dispatcher.run(int, {})


FLAKY_TORCH = """
import os
from dispatcher import Placeholder, TorchTask

class FlakyTorch(TorchTask):
    mixin = {"state": Placeholder(str)}

    def generate_tasks(self):
        return [{"name": n} for n in ("a", "b", "c", "d")]

    def load_data(self, name):
        import torch
        if name == "c" and not os.path.exists(os.path.join(self.mixin.state, "c-loaded")):
            open(os.path.join(self.mixin.state, "c-loaded"), "w").close()
            raise OSError("first load fails")
        return {"x": torch.tensor(1.0)}

    def inference(self, device, batch_size, x, **batch):
        return x

    def postprocess_each(self, batch_idx, batch_size, name, **row):
        path = os.path.join(self.mixin.state, name)
        tries = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as fh:
            fh.write(str(tries + 1))
        if name in ("a", "d") and tries == 0 or name == "d":
            raise RuntimeError(f"{name} fails")
"""


@pytest.mark.parametrize("backbone", ["torch", "serial"])
def test_retries_rerun_failed_items_of_a_torch_task(tmp_path, backbone):
    task = write_file(tmp_path / "flaky_torch.py", FLAKY_TORCH)
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
