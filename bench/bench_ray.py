"""The `ray` backbone's per-item cost against `mp`, on one machine, the cluster already up.

    python bench/bench_ray.py [--items 20000] [--workers 2] [--rounds 3]

The tiny-item contract of bench_per_item.py (N small text files in /dev/shm, one JSON
output each, the template task declared as a user would): `--backbone mp --num-process P`
against `--backbone ray --num-actors P` on a Ray head started once here (`ray start
--head` with P CPUs, as the tests start theirs; runs join through RAY_ADDRESS). Each contender runs over N and over
N/10 items from empty output roots; the per-item cost is the difference of the two walls
over the difference in items, so start-up, planning and joining cancel out. Rounds are
interleaved and ratios taken within a round; medians are printed. Start-up is printed
apart: `ray start --head`, and a run of one item that joins the cluster, and one that
starts a local Ray and stops it.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_per_item import TASKS, WORK

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_ray import QUIET, RayCluster  # noqa: E402  (the tests' cluster: one head here)


def make_inputs(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.txt").write_text(f"item {i} " + "word " * (i % 17))


def run(task: Path, src: Path, dst: Path, engine: list[str], env: dict[str, str]) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", str(task), "Template", *engine,
         "--log-dir", str(dst.parent / "logs"), "--mixin", f"input={src}", f"output={dst}"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(engine)} failed:\n{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/dev/shm"))
    env = {**os.environ, **QUIET}
    env.pop("RAY_ADDRESS", None)
    cluster = None
    try:
        (base / "bench_work.py").write_text(WORK)
        task = base / "bench_tasks.py"
        task.write_text(TASKS)
        big, small = base / "big", base / "small"
        make_inputs(big, args.items)
        make_inputs(small, args.items // 10)
        one = base / "one"
        make_inputs(one, 1)
        local = run(task, one, base / "out-local", ["--backbone", "ray", "--num-actors", "1"], env)
        cluster = RayCluster(head_cpus=args.workers, worker_cpus=0)
        began = time.perf_counter()
        cluster.start()
        head = time.perf_counter() - began
        joined = {**env, **cluster.env()}
        engines = {
            "mp": (["--backbone", "mp", "--num-process", str(args.workers)], env),
            "ray": (["--backbone", "ray", "--num-actors", str(args.workers)], joined),
        }
        join = run(task, one, base / "out-join", engines["ray"][0], joined)
        per_item: dict[str, list[float]] = {name: [] for name in engines}
        walls: dict[str, list[float]] = {name: [] for name in engines}
        ratios = []
        for name, (engine, e) in engines.items():  # warm-up
            run(task, small, base / f"out-{name}", engine, e)
        for _ in range(args.rounds):
            cost = {}
            for name, (engine, e) in engines.items():
                wall_big = run(task, big, base / f"out-{name}", engine, e)
                wall_small = run(task, small, base / f"out-{name}", engine, e)
                cost[name] = (wall_big - wall_small) / (args.items - args.items // 10)
                per_item[name].append(cost[name])
                walls[name].append(wall_big)
            ratios.append(cost["ray"] / cost["mp"])
        print(f"items {args.items} (and {args.items // 10}), {args.workers} workers / actors, "
              f"{args.rounds} rounds, medians")  # fmt: skip
        for name in engines:
            print(f"  {name:4} per item {statistics.median(per_item[name]) * 1e6:8.1f} us   "
                  f"wall at {args.items}: {statistics.median(walls[name]):6.2f} s")  # fmt: skip
        print(f"  ray / mp per-item cost: {statistics.median(ratios):.2f}x "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
        print(f"start-up: ray start --head {head:.1f} s; a 1-item run joining it {join:.1f} s; "
              f"a 1-item run with a local Ray started and stopped {local:.1f} s")  # fmt: skip
    finally:
        if cluster is not None:
            cluster.stop()  # this cluster only: another Ray of the machine goes on
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
