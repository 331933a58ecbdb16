"""Template tasks reached through kagurazaka's hooks: a plain class, a torch task without torch."""

from dispatcher import TorchTask
from templates import InputByExtensions, OutputWithExtension, cpu_task, torch_task


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".o"))
class Plain:
    """Not a Task: the decorator makes it one."""

    def process(self, input, output):
        with open(input) as src, open(output, "w") as dst:
            dst.write(src.read())


@torch_task(input_mode=InputByExtensions(exts=[".jpg"]), output_mode=OutputWithExtension(".emb"))
class Embed(TorchTask):
    def load_data(self, input):
        return {"text": open(input).read()}

    def inference(self, device, batch_size, text, **batch):
        return [len(t) for t in text]

    def postprocess_each(self, batch_idx, batch_size, output, result, **row):
        with open(output, "w") as fh:
            fh.write(str(result))
