"""A torch task whose batch claims all its items (files of a walk)."""

import json
import os
from pathlib import Path

from dispatcher import TorchTask
from templates import InputByExtensions, OutputWithExtension, torch_task


@torch_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Whole(TorchTask):
    def load_data(self, input):
        import torch

        return {"v": torch.tensor([float(len(Path(input).read_text()))])}

    def process(self, device, batch):
        for path, name in zip(batch["output"], batch["input"], strict=True):
            with open(path, "w") as fh:
                json.dump({"input": os.path.basename(name)}, fh)
