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
    def load_data(self, input, row, line):
        return {"text": row["text"]}

    def process(self, device, batch):
        pass
