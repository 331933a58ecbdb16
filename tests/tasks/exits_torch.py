"""Torch tasks that raise SystemExit in the hook `hook` names (per item or per batch)."""

import json
import os
import sys

import torch

from dispatcher import Placeholder, TorchTask, atomic_write


class Base(TorchTask):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=40),
        "hook": Placeholder(str, default="-"),
        "on": Placeholder(str, default="i013"),
    }

    def exit_in(self, hook, names=()):
        if hook == self.mixin.hook and (not names or self.mixin.on in names):
            sys.exit(0)

    def generate_tasks(self):
        return [{"name": f"i{i:03d}", "value": i} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def path(self, name):
        return os.path.join(self.mixin.out, name + ".json")

    def write(self, name, y):
        with atomic_write(self.path(name)) as tmp, open(tmp, "w") as fh:
            json.dump({"y": y}, fh)

    def load_model(self, device):
        self.exit_in("load_model")

    def load_data(self, name, value):
        self.exit_in("load_data", [name])
        return {"x": torch.tensor([float(value)])}

    def inference(self, device, batch_size, name, value, x):
        self.exit_in("inference", name)
        return x * 2


class Each(Base):
    def is_each_executed(self, name, value):
        return os.path.exists(self.path(name))

    def postprocess_each(self, batch_idx, batch_size, name, value, x, result):
        self.exit_in("postprocess_each", [name])
        self.write(name, result.item())


class Batch(Base):
    def is_executed(self, batch):
        return all(os.path.exists(self.path(name)) for name in batch["name"])

    def postprocess(self, batch_size, results, name, **batch):
        self.exit_in("postprocess", name)
        for i in range(batch_size):
            self.write(name[i], results[i].item())
