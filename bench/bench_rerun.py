"""Rerun over a fully done dataset: how long does `dispatch` take to find nothing to do?

Builds (once, cached) 200,000 small input files in nested folders and one output file
for each, as a template task (`InputByExtensions` + `OutputWithExtension`) names them,
then times the whole `dispatch` command (process start to exit) against walking the
input and output trees with `os.scandir` in one process, the least any tool could do.

    python bench/bench_rerun.py                 # 200,000 files under $TMPDIR
    python bench/bench_rerun.py --files 20000 --repeat 3 --data /tmp/rerun-bench

Prints figures only; it never fails on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TASK = """
from dispatcher import Task
from templates import InputByExtensions, OutputWithExtension, cpu_task


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Rerun(Task):
    def process(self, input, output):
        with open(input, "rb") as src, open(output, "wb") as dst:
            dst.write(src.read())
"""

TOP, MID = 20, 20  # 400 leaf folders


def build(data: str, files: int) -> tuple[str, str, str]:
    """The cached dataset: input tree, output tree (all done) and the task file."""
    src, out, task = (os.path.join(data, n) for n in ("input", "output", "task.py"))
    marker = os.path.join(data, f".complete-{files}")
    if os.path.exists(marker):
        return src, out, task
    import shutil

    for path in (src, out):
        shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    per_leaf = -(-files // (TOP * MID))
    made = 0
    for a in range(TOP):
        for b in range(MID):
            rel = f"part-{a:02d}/group-{b:02d}"
            os.makedirs(os.path.join(src, rel))
            os.makedirs(os.path.join(out, rel))
            for _ in range(per_leaf):
                if made == files:
                    break
                name = f"{rel}/item-{made:07d}.txt"
                with open(os.path.join(src, name), "w") as fh:
                    fh.write(f"item {made}\n")
                with open(os.path.join(out, name + ".json"), "w") as fh:
                    fh.write(f"item {made}\n")
                made += 1
    with open(task, "w") as fh:
        fh.write(TASK)
    open(marker, "w").close()
    print(f"built {files} inputs and outputs in {time.perf_counter() - start:.1f}s under {data}")
    return src, out, task


def scandir_walk(*roots: str) -> int:
    """Walk every tree with os.scandir, collecting names: the floor for any rerun check."""
    count = 0
    for root in roots:
        stack = [root]
        while stack:
            path = stack.pop()
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        count += 1
    return count


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--data",
        default=os.path.join(tempfile.gettempdir(), "shard-dispatch-bench", "rerun"),
        help="cache folder for the generated dataset",
    )
    parser.add_argument("--backbone", default="auto")
    args = parser.parse_args()

    src, out, task = build(os.path.join(args.data, str(args.files)), args.files)
    logs = tempfile.mkdtemp(prefix="rerun-logs-")
    command = [
        sys.executable, "-m", "dispatcher", task, "Rerun", "--backbone", args.backbone,
        "--log-dir", logs, "--mixin", f"input={src}", f"output={out}",
    ]  # fmt: skip

    scandir_walk(src, out)  # warm the directory cache for both measurements
    plan = subprocess.run([*command, "--plan"], capture_output=True, text=True, check=True)
    print(plan.stdout.strip())

    # Interleaved, so that load from other processes hits every measurement alike.
    empty = tempfile.mkdtemp(prefix="rerun-empty-")
    os.mkdir(os.path.join(empty, "in"))  # the output root beside it: never inside an input
    fixed_command = [
        *command[: command.index("--mixin")],
        "--mixin", f"input={os.path.join(empty, 'in')}", f"output={os.path.join(empty, 'out')}",
    ]  # fmt: skip
    walks, walk_process, runs, fixed = [], [], [], []
    walk_cpu, run_cpu = [], []
    walker = (
        f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
        f"import bench_rerun as b; b.scandir_walk({src!r}, {out!r})"
    )
    for _ in range(args.repeat):
        start = time.perf_counter()
        entries = scandir_walk(src, out)
        walks.append(time.perf_counter() - start)
        start, cpu = time.perf_counter(), _children_cpu()
        subprocess.run([sys.executable, "-c", walker], check=True)
        walk_process.append(time.perf_counter() - start)
        walk_cpu.append(_children_cpu() - cpu)
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, capture_output=True, text=True)
        runs.append(time.perf_counter() - start)
        run_cpu.append(_children_cpu() - cpu)
        start = time.perf_counter()
        subprocess.run(fixed_command, capture_output=True, check=True)
        fixed.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"dispatch exited {done.returncode}: {done.stderr.strip()}")
    last_line = done.stderr.strip().splitlines()[-1]

    def figures(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f}s  min {min(values):.3f}s"

    print(
        f"dataset: {args.files} inputs + {args.files} outputs in nested folders ({entries} files)"
    )
    print(f"dispatch said: {last_line}")
    print(f"dispatch rerun, whole command:        {figures(runs)}  (target <= 1.5s)")
    print(f"os.scandir walk of both trees:        {figures(walks)}  (in-process)")
    print(f"the same walk as a python process:    {figures(walk_process)}")
    print(
        f"dispatch / in-process walk:  {statistics.median(runs) / statistics.median(walks):.2f}x "
        f"median, {min(runs) / min(walks):.2f}x best  (target <= 2x)"
    )
    print(
        f"dispatch / walk process:     "
        f"{statistics.median(runs) / statistics.median(walk_process):.2f}x median, "
        f"{min(runs) / min(walk_process):.2f}x best"
    )
    data_plane = statistics.median(runs) - statistics.median(fixed)
    print(
        f"the same command on an empty dataset: {figures(fixed)}  (start-up: interpreter, "
        "imports, configuration)"
    )
    print(
        f"dispatch minus start-up: {data_plane:.3f}s = {data_plane / statistics.median(walks):.2f}x "
        "the in-process walk"
    )
    print(
        f"CPU time (user+sys) of the processes: dispatch {figures(run_cpu)}, "
        f"walk {figures(walk_cpu)}: {min(run_cpu) / min(walk_cpu):.2f}x best"
    )
    print(f"({args.repeat} interleaved runs each; os.cpu_count()={os.cpu_count()})")


if __name__ == "__main__":
    main()
