"""A torch task whose loading kills its DataLoader worker on the items named `kill`."""

import json
import os
import signal

import torch

from dispatcher import Placeholder, TorchTask, atomic_write


class Killer(TorchTask):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=16),
        "kill": Placeholder(str, default="i005"),
    }

    def generate_tasks(self):
        return [{"name": f"i{i:03d}", "value": i} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def path(self, name):
        return os.path.join(self.mixin.out, name + ".json")

    def is_each_executed(self, name, value):
        return os.path.exists(self.path(name))

    def load_model(self, device):
        pass

    def load_data(self, name, value):
        if name in self.mixin.kill.split(","):
            os.kill(os.getpid(), signal.SIGKILL)  # takes its DataLoader worker down
        return {"x": torch.tensor([float(value)])}

    def inference(self, device, batch_size, name, value, x):
        return x * 2

    def postprocess_each(self, batch_idx, batch_size, name, value, x, result):
        with atomic_write(self.path(name)) as tmp, open(tmp, "w") as fh:
            json.dump({"y": result.item(), "batch_size": batch_size}, fh)
