"""A torch task that keeps DataLoader workers, the fetch and the postprocessing threads busy
and records, at exit, which threads are still alive (OUT.threads)."""

import atexit
import json
import os
import threading
import time

import torch

from dispatcher import Placeholder, TorchTask, atomic_write


def threads_left(path):
    with open(path, "w") as fh:
        json.dump(sorted(t.name for t in threading.enumerate() if t.is_alive()), fh)


class Busy(TorchTask):
    mixin = {"out": Placeholder(str), "n": Placeholder(int, default=20000)}

    def setup(self):
        # What is still running when the interpreter exits (atexit runs before the end).
        atexit.register(threads_left, self.mixin.out.rstrip("/") + ".threads")

    def generate_tasks(self):
        return [{"name": f"i{i:05d}"} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def is_each_executed(self, name):
        return os.path.exists(os.path.join(self.mixin.out, name + ".json"))

    def load_model(self, device):
        self.w = torch.randn(64, 64)

    def load_data(self, name):
        return {"x": (torch.randn(64, 64) @ torch.randn(64, 64)).sum(0)}

    def inference(self, device, batch_size, name, x):
        time.sleep(0.003)
        y = x @ self.w
        for _ in range(5):
            y = torch.tanh(y @ self.w)
        return y

    def postprocess_each(self, batch_idx, batch_size, name, x, result):
        value = (result @ result).item()  # torch in the postprocessing thread
        with (
            atomic_write(os.path.join(self.mixin.out, name + ".json")) as tmp,
            open(tmp, "w") as fh,
        ):
            json.dump({"v": value}, fh)
