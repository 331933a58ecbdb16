"""Row tasks whose results are packed into part files (`OutputPacked`): one output row
per input row, rows marked `drop` left out, `boom` rows raise; `PACKED_PAUSE` seconds of
sleep per row (to be killed mid-run)."""

import os
import time

from dispatcher import Task, TorchTask
from templates import InputJsonlFiles, InputJsonlRows, OutputPacked, cpu_task, torch_task


@cpu_task(input_mode=InputJsonlRows(), output_mode=OutputPacked())
class Upper(Task):
    def process(self, input, row, line):
        pause = float(os.environ.get("PACKED_PAUSE", "0"))
        if pause:
            time.sleep(pause)
        if row.get("boom"):
            raise ValueError(f"boom at line {line}")
        if row.get("drop"):
            return None
        if row.get("wrong"):
            return [row]
        return {"id": row["id"], "text": row["text"].upper(), "line": line}


@cpu_task(input_mode=InputJsonlFiles(), output_mode=OutputPacked())
class FilesNotRows(Task):
    def process(self, input, output):
        pass


@torch_task(input_mode=InputJsonlRows(), output_mode=OutputPacked())
class TorchUpper(TorchTask):
    """Rows loaded in DataLoader workers, batched across items: `inference` on the batch,
    one output row per input row from `postprocess_each`; `boom` rows fail at load."""

    def load_data(self, input, row, line):
        import torch

        pause = float(os.environ.get("PACKED_PAUSE", "0"))
        if pause:
            time.sleep(pause)
        if row.get("boom"):
            raise ValueError(f"boom at line {line}")
        return {"n": torch.tensor(len(row["text"])), "id": row["id"], "drop": bool(row.get("drop"))}

    def inference(self, device, size, n, **rest):
        sizes = os.environ.get("PACKED_BATCHES")
        if sizes:
            with open(sizes, "a") as fh:
                fh.write(f"{size}\n")
        return {"twice": n * 2}

    def postprocess_each(self, i, size, id, twice, line, drop, **rest):
        if drop:
            return None
        return {"id": int(id), "twice": int(twice), "line": int(line)}


@torch_task(input_mode=InputJsonlRows(), output_mode=OutputPacked())
class TorchProcess(TorchTask):
    """`process(device, batch)` returns the batch's output rows."""

    def load_data(self, input, row, line):
        return {"text": row["text"], "id": row["id"]}

    def process(self, device, batch):
        return [
            {"id": int(i), "text": t.upper()}
            for i, t in zip(batch["id"], batch["text"], strict=True)
        ]
