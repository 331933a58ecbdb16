"""A torch template task whose load_data() and postprocess_each() do not fit the template."""

from dispatcher import TorchTask
from templates import InputByExtensions, OutputWithExtension, torch_task


@torch_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(ext=".out")
)
class T(TorchTask):
    def load_data(self, path):
        return {}

    def inference(self, device, batch_size, **batch):
        return [0] * batch_size

    def postprocess_each(self, batch_idx, batch_size, input, result):
        pass
