"""A torch task whose loading (in a DataLoader worker) raises malformed input, or an
exception only named like it, for the item given as `sub` or `lookalike`."""

import json
import os

import torch

from dispatcher import MalformedInput, Placeholder, TorchTask, atomic_write


class BadFile(MalformedInput):
    pass


class Unrelated:
    class MalformedInput(ValueError):
        pass


class Loads(TorchTask):
    """Items whose loading (in a DataLoader worker) raises."""

    mixin = {
        "out": Placeholder(str),
        "sub": Placeholder(int, default=-1),
        "lookalike": Placeholder(int, default=-1),
    }

    def generate_tasks(self):
        return [{"i": i} for i in range(8)]

    def is_each_executed(self, i):
        return os.path.exists(os.path.join(self.mixin.out, f"{i}.json"))

    def load_data(self, i):
        if i == self.mixin.sub:
            raise BadFile(f"file{i}.bin: truncated")
        if i == self.mixin.lookalike:
            raise Unrelated.MalformedInput(f"looks bad {i}")
        return {"x": torch.tensor([float(i)])}

    def inference(self, device, batch_size, i, x, **batch):
        return x

    def postprocess_each(self, batch_idx, batch_size, i, x, result):
        i = int(i)
        with atomic_write(os.path.join(self.mixin.out, f"{i}.json")) as tmp, open(tmp, "w") as fh:
            json.dump(i, fh)
