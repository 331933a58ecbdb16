"""A template torch task that needs torch: twice each file's length, computed on the device."""

import torch

from dispatcher import TorchTask
from templates import InputByExtensions, OutputWithExtension, torch_task


@torch_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".len"))
class Length(TorchTask):
    def load_data(self, input):
        return {"n": torch.tensor([float(len(open(input).read()))])}

    def load_model(self, device):
        self.scale = 2.0

    def inference(self, device, batch_size, n, **batch):
        return n.to(device) * self.scale

    def postprocess_each(self, batch_idx, batch_size, output, result, **row):
        with open(output, "w") as fh:
            fh.write(str(int(result.item())))
