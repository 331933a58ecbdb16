"""Tasks the serial engine runs in this process: torch batches, retries, timeouts."""

import json
import os
import time

from dispatcher import Placeholder, Task, TorchTask


class Sizes(TorchTask):
    """Writes the size of the batch each item was computed in."""

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


def _count_try(state: str, name: str) -> int:
    """Counts a try of item `name` in the folder `state`; returns the tries before it."""
    path = os.path.join(state, name)
    tries = 0
    if os.path.exists(path):
        with open(path) as fh:
            tries = int(fh.read())
    with open(path, "w") as fh:
        fh.write(str(tries + 1))
    return tries


class Flaky(Task):
    """`once` fails its first try, `stuck` never ends, `fine` is fine."""

    mixin = {"state": Placeholder(str)}

    def generate_tasks(self):
        return [{"name": "once"}, {"name": "stuck"}, {"name": "fine"}]

    def process(self, name):
        tries = _count_try(self.mixin.state, name)
        if name == "once" and tries == 0:
            raise RuntimeError("first try fails")
        if name == "stuck":
            time.sleep(30)


class FlakyTorch(TorchTask):
    """`c` fails its first load, `a` its first write, `d` every write."""

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
        tries = _count_try(self.mixin.state, name)
        if name in ("a", "d") and tries == 0 or name == "d":
            raise RuntimeError(f"{name} fails")


class Half(TorchTask):
    """inference() without postprocess_each(): no compute mode, refused everywhere."""

    def generate_tasks(self):
        return [{"i": 1}]

    def inference(self, device, batch_size, **batch):
        return batch
