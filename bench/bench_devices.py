"""Dynamic balancing of `--devices` against the ideal makespan, on simulated devices.

    python bench/bench_devices.py [--devices 4] [--slow 2.0] [--items 2400] [--repeat 3]
    python bench/bench_devices.py --real cuda:all      # on a GPU node: real devices

N CPU processes stand in for N devices (`--devices cpu,cpu,...`): `inference` sleeps a
synthetic cost per batch, the sum of its items' costs (every 7th item costs 5 units, the
others 1: a few long videos), times `--slow` on the first device. Sleeping leaves the
CPUs free, as a GPU would. The ideal makespan is total work / total speed: the work in
units of the fast devices' time, over (N - 1 + 1/slow). The script prints the measured
compute makespan (first batch started to last batch finished, from each batch's own
timestamps) and its ratio to the ideal (goal: within 10%), both the nominal one and the
one of the work as measured (each batch's own duration: a sleep overshoots by a fraction
of a millisecond, which is the simulated device's doing), what a static split into N equal
shards would take (the slow device's share sets it), the command's whole wall time, and
how many items each device took. Figures, not a test.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
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


class Simulated(TorchTask):
    mixin = {"output": Placeholder(str), "n": Placeholder(int), "unit": Placeholder(float),
             "slow": Placeholder(float), "slow_device": Placeholder(str)}

    def setup(self):
        self.me = os.environ.get("DISPATCH_DEVICE", "?")
        self.factor = self.mixin.slow if self.me == self.mixin.slow_device else 1.0
        self.journal = open(f"{self.mixin.output}.{os.getpid()}.journal", "a", buffering=1)

    def generate_tasks(self):
        return [{"name": f"{i:06d}"} for i in range(self.mixin.n)]

    def item_key(self, item):
        return item["name"]

    def is_each_executed(self, name):
        return False

    def load_data(self, name):
        return {"x": torch.tensor([float(int(name))])}

    def inference(self, device, batch_size, name, x):
        units = sum(5 if int(n) % 7 == 0 else 1 for n in name)
        start = time.time()
        time.sleep(units * self.mixin.unit * self.factor)
        self.journal.write(json.dumps([self.me, start, time.time(), units, len(name)]) + "\\n")
        return x

    def postprocess_each(self, batch_idx, batch_size, name, x, result):
        pass
"""


def units(items: int) -> list[int]:
    return [5 if i % 7 == 0 else 1 for i in range(items)]


def run_once(folder: Path, args: argparse.Namespace) -> dict:
    out = folder / f"run-{time.monotonic_ns()}"
    devices = args.real or ",".join(["cpu"] * args.devices)
    slow_device = "cpu#0" if not args.real else "-"
    command = [
        sys.executable, "-m", "dispatcher", str(folder / "simulated.py"), "Simulated",
        "--backbone", "torch", "--devices", devices, "--batch-size", str(args.batch_size),
        "--num-workers", str(args.workers), "--log-dir", str(folder / "logs"),
        "--mixin", f"output={out}", f"n={args.items}", f"unit={args.unit}",
        f"slow={args.slow}", f"slow_device={slow_device}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    started = time.monotonic()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"dispatch failed ({done.returncode}):\n{done.stderr}")
    batches = []
    for path in folder.glob(f"{out.name}.*.journal"):
        batches += [json.loads(line) for line in path.read_text().splitlines()]
    first = min(b[1] for b in batches)
    last = max(b[2] for b in batches)
    taken = collections.Counter()
    measured = 0.0  # the work as the devices did it, in fast-device seconds
    for device, start, end, _, count in batches:
        taken[device] += count
        measured += (end - start) / (args.slow if device == slow_device else 1.0)
    assert sum(taken.values()) == args.items, "an item was computed twice or not at all"
    return {
        "makespan": last - first,
        "measured_work": measured,
        "wall": wall,
        "taken": dict(sorted(taken.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=4, help="simulated devices (default 4)")
    parser.add_argument("--slow", type=float, default=2.0, help="the slow device's factor")
    parser.add_argument("--items", type=int, default=2400)
    parser.add_argument("--unit", type=float, default=0.002, help="seconds per cost unit")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="loader workers per device")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", default=None, help="real devices instead (e.g. cuda:all)")
    args = parser.parse_args()

    work = sum(units(args.items)) * args.unit
    speed = args.devices - 1 + 1 / args.slow
    ideal = work / speed
    # A static split: N equal shards; the slow device's shard sets the makespan.
    static = max(work / args.devices * args.slow, work / args.devices)
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-devices-", dir=root) as tmp:
        folder = Path(tmp)
        (folder / "simulated.py").write_text(TASK)
        runs = [run_once(folder, args) for _ in range(args.repeat)]
    makespans = [r["makespan"] for r in runs]
    median = statistics.median(makespans)
    print(
        f"{args.devices} simulated devices (one {args.slow:g}x slower), {args.items} items "
        f"in batches of {args.batch_size}, {work:.2f} s of work at full speed"
    )
    if args.real:
        print(f"real devices: {args.real} (no slow device; the ideal assumes equal speeds)")
    print(f"ideal makespan (work / total speed): {ideal:.3f} s")
    print(f"static split into {args.devices} equal shards: {static:.3f} s ({static / ideal:.2f}x)")
    ratios = []
    for r in runs:
        measured_ideal = r["measured_work"] / speed
        ratios.append(r["makespan"] / measured_ideal)
        print(
            f"  run: makespan {r['makespan']:.3f} s: {r['makespan'] / ideal:.3f}x the nominal "
            f"ideal, {ratios[-1]:.3f}x the ideal of the work as measured "
            f"({measured_ideal:.3f} s: a sleep overshoots), wall {r['wall']:.2f} s, "
            f"items per device {r['taken']}"
        )
    print(
        f"median makespan {median:.3f} s = {median / ideal:.3f}x the nominal ideal, "
        f"{statistics.median(ratios):.3f}x the measured-work ideal (goal <= 1.10x)"
    )


if __name__ == "__main__":
    main()
