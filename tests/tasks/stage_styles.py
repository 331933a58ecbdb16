"""One task of each style the stage contract covers, each making outputs a.json ... e.json."""

import json
import os

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
        with open(input) as src, open(output, "w") as fh:
            json.dump({"text": src.read(), "pid": os.getpid()}, fh)


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

        return DataLoader(
            RowsDataset(), batch_size=2, collate_fn=lambda rows: {"name": [r["name"] for r in rows]}
        )

    def is_each_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

    def inference(self, device, batch_size, name):
        return list(name)

    def postprocess_each(self, batch_idx, batch_size, name, result):
        mark(self.mixin.output, name, "torch-loader")
