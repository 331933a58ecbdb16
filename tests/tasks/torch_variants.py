"""Every torch-task variant on one base: load_model, setup and teardown append to
OUTPUT.events, so a test sees what ran and how often; what fails is chosen with --mixin."""

import json
import os
import signal
import threading
import time

import torch
from torch.utils.data import DataLoader, Dataset

from dispatcher import Placeholder, TorchTask, atomic_write


class Base(TorchTask):
    mixin = {
        "output": Placeholder(str),
        "n": Placeholder(int, default=7),
        "fail_load": Placeholder(str, default="-"),
        "fail_infer": Placeholder(str, default="-"),
        "fail_post": Placeholder(str, default="-"),
        "kill_load": Placeholder(str, default="-"),
        "sleep": Placeholder(float, default=0.0),
    }

    def log(self, text):
        with open(self.mixin.output.rstrip("/") + ".events", "a") as fh:
            fh.write(text + "\n")

    def setup(self):
        self.log("setup")

    def teardown(self):
        self.log("teardown")

    def load_model(self, device):
        self.log(f"load_model {device}")
        self.device = device
        self.scale = torch.tensor(2.0, device=device)

    def out(self, name):
        return os.path.join(self.mixin.output, name + ".json")

    def exists(self, name):
        return os.path.exists(self.out(name))

    def write(self, name, y, **extra):
        if name == self.mixin.fail_post:
            raise OSError(f"disk full writing {name}")
        record = {
            "name": name,
            "y": y,
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
            **extra,
        }
        with atomic_write(self.out(name)) as tmp, open(tmp, "w") as fh:
            json.dump(record, fh)

    def compute(self, name, x):
        assert torch.is_inference_mode_enabled()
        if self.mixin.fail_infer in name:
            raise RuntimeError("inference exploded")
        time.sleep(self.mixin.sleep)
        return x * self.scale


class Items(Base):
    def generate_tasks(self):
        return [{"name": f"i{i:03d}", "value": i} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def load_data(self, name, value):
        if name == self.mixin.fail_load:
            raise ValueError(f"cannot decode {name}")
        if name == self.mixin.kill_load:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"x": torch.tensor([float(value)]), "loader_pid": os.getpid()}


class Each(Items):
    def is_each_executed(self, name, value):
        return self.exists(name)

    def inference(self, device, batch_size, name, x, **batch):
        assert len(name) == batch_size == x.shape[0]
        return self.compute(name, x)

    def postprocess_each(self, batch_idx, batch_size, name, value, x, loader_pid, result):
        assert isinstance(name, str) and result.shape == (1,)
        self.write(name, result.item(), loader_pid=int(loader_pid), batch_size=batch_size)


class Batch(Items):
    def is_executed(self, batch):
        return all(self.exists(name) for name in batch["name"])

    def inference(self, device, batch_size, name, x, **batch):
        return {"y": self.compute(name, x)[:, 0], "tag": [f"t-{n}" for n in name]}

    def postprocess(self, batch_size, results, name, **batch):
        for i in range(batch_size):
            self.write(name[i], results["y"][i].item(), tag=results["tag"][i])


class Proc(Items):
    def is_each_executed(self, name, value):
        return self.exists(name)

    def process(self, device, batch):
        y = self.compute(batch["name"], batch["x"])
        for name, value in zip(batch["name"], y[:, 0].tolist(), strict=True):
            self.write(name, value)


class Rows(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"name": f"r{i:03d}", "x": torch.tensor([float(i)])}


class OwnDataset(Base):
    def get_dataset(self):
        self.log("get_dataset")
        return Rows(self.mixin.n)

    def is_each_executed(self, name, x):
        return self.exists(name)

    def inference(self, device, batch_size, name, x):
        return self.compute(name, x)

    def postprocess_each(self, batch_idx, batch_size, name, x, result):
        self.write(name, result.item())


class WaitsForModel(Rows):
    """Rows that wait (up to 5 s) for load_model and say whether it came first."""

    def __init__(self, n, events):
        super().__init__(n)
        self.events = events

    def model_loaded(self):
        return os.path.exists(self.events) and "load_model" in open(self.events).read()

    def __getitem__(self, i):
        deadline = time.monotonic() + 5.0
        while not self.model_loaded() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {**super().__getitem__(i), "model_first": self.model_loaded()}


class OwnDatasetNoCheck(Base):
    """An own dataset without a done check: nothing to check after loading."""

    def get_dataset(self):
        return WaitsForModel(self.mixin.n, self.mixin.output.rstrip("/") + ".events")

    def inference(self, device, batch_size, name, x, model_first):
        return self.compute(name, x)

    def postprocess_each(self, batch_idx, batch_size, name, x, model_first, result):
        self.write(name, result.item(), model_first=bool(model_first))


class OwnLoader(OwnDataset):
    def get_dataloader(self):
        return DataLoader(Rows(self.mixin.n), batch_size=3, num_workers=1)

    def is_each_executed(self, **row):
        raise AssertionError("not asked: the batch-level check is implemented")

    def is_executed(self, batch):
        return all(self.exists(name) for name in batch["name"])


class Strings(Items):
    """No tensors at all: runs on a stand-in device that cannot hold any."""

    def generate_tasks(self):
        return [{"name": f"s{i}"} for i in range(self.mixin.n)]

    def load_model(self, device):
        self.log(f"load_model {device}")
        self.device = device

    def load_data(self, name):
        return {"label": name.upper()}

    def is_each_executed(self, name):
        return self.exists(name)

    def inference(self, device, batch_size, name, label):
        return [f"{text}@{device}" for text in label]

    def postprocess_each(self, batch_idx, batch_size, name, label, result):
        self.write(name, result, device=str(self.device))
