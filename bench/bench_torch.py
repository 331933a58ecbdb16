"""Throughput of the torch backbone on CPU against the bound set by its slowest stage.

    python bench/bench_torch.py [--items 960] [--workers 2] [--batch-size 16]

Synthetic costs: `load_data` sleeps PREP seconds per item (in DataLoader workers),
`inference` sleeps MODEL seconds per batch (a stand-in for device compute, which leaves
the CPU free as a GPU would), and `postprocess_each` writes one small JSON file per item.
With W workers the run cannot be faster than the slower of N*PREP/W (loading) and
ceil(N/B)*MODEL (compute); the script prints the achieved items/s and its share of that
bound, for a loading-bound, a compute-bound and a balanced case. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TASK = """
import json, os, time
import torch
from dispatcher import Placeholder, TorchTask


class Synthetic(TorchTask):
    mixin = {
        "output": Placeholder(str),
        "n": Placeholder(int),
        "prep": Placeholder(float),
        "model": Placeholder(float),
    }

    def generate_tasks(self):
        return [{"name": f"{i:06d}"} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def is_each_executed(self, name):
        return False

    def load_model(self, device):
        self.scale = torch.tensor(2.0, device=device)

    def load_data(self, name):
        time.sleep(self.mixin.prep)
        return {"x": torch.full((64,), float(int(name)))}

    def inference(self, device, batch_size, name, x):
        time.sleep(self.mixin.model)
        return x * self.scale

    def postprocess_each(self, batch_idx, batch_size, name, x, result):
        with open(os.path.join(self.mixin.output, name + ".json"), "w") as fh:
            json.dump({"name": name, "sum": float(result.sum())}, fh)
"""


def run_case(
    label: str, items: int, workers: int, batch: int, prep: float, model: float, tmp: Path
) -> None:
    task = tmp / "synthetic_task.py"
    task.write_text(TASK)
    out = tmp / f"out-{label}"
    out.mkdir()
    logs = tmp / f"logs-{label}"
    cmd = [
        sys.executable, "-m", "dispatcher", str(task), "Synthetic",
        "--backbone", "torch", "--device", "cpu", "--batch-size", str(batch),
        "--num-workers", str(workers), "--log-dir", str(logs),
        "--mixin", f"output={out}", f"n={items}", f"prep={prep}", f"model={model}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    command_wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{label}: failed (exit {proc.returncode})\n{proc.stderr}")
        return
    record = json.loads(next(logs.rglob("run.json")).read_text())
    run_wall = record["wall_seconds"]
    loading = items * prep / workers
    compute = math.ceil(items / batch) * model
    bound = items / max(loading, compute)
    achieved = items / run_wall
    written = len(list(out.iterdir()))
    print(
        f"{label:<14} loading {loading:5.2f}s  compute {compute:5.2f}s  bound {bound:6.1f}/s  "
        f"achieved {achieved:6.1f}/s = {100 * achieved / bound:5.1f}% of bound  "
        f"(run {run_wall:.2f}s, whole command {command_wall:.2f}s, {written} files)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=960)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    n, w, b = args.items, args.workers, args.batch_size
    print(
        f"torch backbone, --device cpu, {n} items, {w} workers, batch {b}, "
        f"{os.cpu_count()} CPUs visible"
    )
    cases = [
        # (label, prep seconds per item, model seconds per batch)
        ("loading-bound", 0.010, 0.5 * 0.010 * b / w),
        ("compute-bound", 0.004, 2.0 * 0.004 * b / w),
        ("balanced", 0.008, 0.008 * b / w),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-torch-") as tmp:
        for label, prep, model in cases:
            run_case(label, n, w, b, prep, model, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
