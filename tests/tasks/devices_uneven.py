"""A torch task for `--devices`: a device process per device, fed from one queue."""

import json
import os
import signal
import time

import torch

from dispatcher import Placeholder, TorchTask, atomic_write


class Uneven(TorchTask):
    """Items of uneven cost (every 5th is 4x); the device named `slow` is `factor`x slower."""

    mixin = {
        "output": Placeholder(str),
        "n": Placeholder(int, default=60),
        "cost": Placeholder(float, default=0.004),
        "slow": Placeholder(str, default="-"),
        "factor": Placeholder(float, default=4.0),
        "fail": Placeholder(str, default="-"),
        "crash_setup": Placeholder(str, default="-"),
        "kill_on": Placeholder(str, default="-"),
        "poison": Placeholder(str, default="-"),
    }

    def journal(self, text):
        with open(self.mixin.output.rstrip("/") + ".journal", "a") as fh:
            fh.write(text + "\n")

    def setup(self):
        self.me = os.environ.get("DISPATCH_DEVICE", "?")
        if self.me == self.mixin.crash_setup:
            raise RuntimeError(f"no memory left on {self.me}")

    def load_model(self, device):
        self.journal(f"model {self.me} {os.getpid()} {device}")

    def generate_tasks(self):
        return [{"name": f"i{i:04d}", "value": i} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def out(self, name):
        return os.path.join(self.mixin.output, name + ".json")

    def is_each_executed(self, name, value):
        return os.path.exists(self.out(name))

    def load_data(self, name, value):
        return {"x": torch.tensor([float(value)])}

    def inference(self, device, batch_size, name, x, **batch):
        if self.mixin.fail in name:
            raise RuntimeError("inference exploded")
        if self.me.startswith(self.mixin.kill_on):
            os.kill(os.getpid(), signal.SIGKILL)
        if set(name) & set(self.mixin.poison.split("+")):
            os.kill(os.getpid(), signal.SIGKILL)  # kills whichever device computes it
        units = sum(4 if int(n[1:]) % 5 == 0 else 1 for n in name)
        factor = self.mixin.factor if self.me == self.mixin.slow else 1.0
        time.sleep(self.mixin.cost * units * factor)
        for n in name:
            self.journal(f"ran {n} {self.me} {os.getpid()}")
        return x * 2

    def postprocess_each(self, batch_idx, batch_size, name, value, x, result):
        with atomic_write(self.out(name)) as tmp, open(tmp, "w") as fh:
            json.dump({"name": name, "y": result.item(), "device": self.me, "pid": os.getpid()}, fh)
