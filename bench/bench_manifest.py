"""Planning an array of N tasks with and without a manifest, on tmpfs.

    python bench/bench_manifest.py [--files 1000000] [--tasks 1000] [--sample 5]
    python bench/bench_manifest.py --synthetic 10000000 [--tasks 1000]

F tiny files in /dev/shm (a template task, one output each, none made yet). Without a
manifest every array task walks the whole input and keeps its hash shard; with one,
`dispatch manifest --shards N` walks once and each task reads its segment. Running N
full plans is not needed to know their cost: `--sample` tasks spread over the array are
planned in this process (`dispatcher.run(..., plan_only=True)`, interpreter start-up
excluded) and the figures extrapolated to N. Metadata operations (opens, stats,
directory reads...) are counted with `strace -c -f` on one task's `--plan` each way,
when strace is installed, and multiplied by N (plus the one walk for the manifest).

`--synthetic ITEMS` skips the files: it writes a manifest of ITEMS template-shaped items
(a key, no payload) straight from a generator and reads segments back, each step in a
fresh interpreter, printing the time and the peak memory (ru_maxrss) of writing it, of
reading one segment, and of reading every segment, so the memory a task needs can be
seen to follow its segment, not the dataset.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TASK = textwrap.dedent(
    """
    from dispatcher import Task
    from templates import InputByExtensions, OutputWithExtension, cpu_task

    @cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
    class Touch(Task):
        def process(self, input, output):
            open(output, "w").close()
    """
)

METADATA = re.compile(
    r"^(open|openat|openat2|stat|lstat|fstat|newfstatat|statx|access|faccessat|faccessat2|"
    r"getdents64|readlink|readlinkat)$"
)


def make_files(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.txt").write_bytes(b"x")


def metadata_calls(argv: list[str]) -> int | None:
    """Metadata system calls of `python -m dispatcher ARGV` (strace -c -f), or None."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(["strace", "-c", "-f", "-o", out.name, sys.executable, "-m", "dispatcher",
                        *argv], capture_output=True, check=True)  # fmt: skip
        total = 0
        for line in out.read().splitlines():
            parts = line.split()
            if len(parts) >= 5 and METADATA.match(parts[-1]) and parts[3].isdigit():
                total += int(parts[3])
        return total


STEP = textwrap.dedent(
    """
    import resource, sys, time
    from dispatcher.manifest import read_manifest, read_segment, write_manifest
    step, path, items, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    if step == "write":
        keys = (f"{i // 1000:05d}/{i:08d}.mp4" for i in range(items))
        write_manifest(path, ((key, None) for key in keys), items, tasks, {})
        held = tasks
    elif step == "one":
        held = len(read_segment(read_manifest(path), tasks // 2))
    else:
        manifest = read_manifest(path)
        every = [item for n in range(tasks) for item in read_segment(manifest, n)]
        held = len(every)
    took = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{took:.3f} {(peak - base) / 1024:.1f} {held}")
    """
)


def synthetic(items: int, tasks: int) -> None:
    """Write and read a manifest of `items` items in `tasks` segments (see the docstring)."""
    base = Path(tempfile.mkdtemp(prefix="bench-manifest-", dir="/dev/shm"))
    try:
        path = str(base / "synthetic.manifest")

        def step(name: str) -> tuple[float, float, int]:
            out = subprocess.run([sys.executable, "-c", STEP, name, path, str(items), str(tasks)],
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            took, peak, held = out.split()
            return float(took), float(peak), int(held)

        write = step("write")
        size = os.path.getsize(path)
        print(f"{items:,} items in {tasks} segments: manifest of {size / 2**20:.0f} MiB on tmpfs")
        print(f"  write (streamed)        {write[0]:8.3f} s   peak memory +{write[1]:7.1f} MiB")
        reads = [step("one") for _ in range(3)]
        took = statistics.median(r[0] for r in reads)
        peak = statistics.median(r[1] for r in reads)
        print(f"  read one segment        {took:8.3f} s   peak memory +{peak:7.1f} MiB "
              f"({reads[0][2]:,} items; median of 3)")  # fmt: skip
        every = step("all")
        print(f"  read every segment      {every[0]:8.3f} s   peak memory +{every[1]:7.1f} MiB "
              f"({every[2]:,} items held at once, for scale)")  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=5)
    parser.add_argument("--synthetic", type=int, metavar="ITEMS",
                        help="no files: write and read a manifest of ITEMS items")  # fmt: skip
    args = parser.parse_args()
    if args.synthetic:
        synthetic(args.synthetic, args.tasks)
        return
    import dispatcher

    base = Path(tempfile.mkdtemp(prefix="bench-manifest-", dir="/dev/shm"))
    try:
        task = base / "touch.py"
        task.write_text(TASK)
        make_files(base / "in", args.files)
        mixin = {"input": str(base / "in"), "output": str(base / "out")}
        logs = base / "logs"
        words = [str(task), "Touch", "--log-dir", str(logs), "--mixin",
                 f"input={base / 'in'}", f"output={base / 'out'}"]  # fmt: skip
        path = base / "run.manifest"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dispatcher", "manifest", "--shards",
                        str(args.tasks), "--output", str(path), "--", *words],
                       check=True, capture_output=True)  # fmt: skip
        write = time.perf_counter() - began
        sample = [round(i * (args.tasks - 1) / max(1, args.sample - 1)) for i in range(args.sample)]
        timings: dict[str, list[float]] = {"walk": [], "manifest": []}
        for shard in sample:
            for way, extra in (("walk", {}), ("manifest", {"manifest": path})):
                began = time.perf_counter()
                result = dispatcher.run(f"{task}:Touch", mixin, shard=f"{shard}/{args.tasks}",
                                        plan_only=True, log_dir=logs, **extra)  # fmt: skip
                timings[way].append(time.perf_counter() - began)
                assert result.exit_code == 0
        print(f"{args.files} files, an array of {args.tasks} tasks; {len(sample)} tasks planned "
              f"(median, in-process); manifest written in {write:.2f} s (one walk)")  # fmt: skip
        for way in ("walk", "manifest"):
            each = statistics.median(timings[way])
            print(f"  {way:8} per task {each * 1000:8.1f} ms   all {args.tasks} tasks "
                  f"{each * args.tasks:8.1f} s of planning")  # fmt: skip
        walk = metadata_calls(["--plan", "--shard", f"0/{args.tasks}", *words])
        read = metadata_calls(
            ["--plan", "--manifest", str(path), "--shard", f"0/{args.tasks}", *words]
        )
        if walk is None or read is None:
            print("  metadata operations: strace is not installed")
        else:
            print(f"  metadata operations, whole array: walking {walk * args.tasks:,} "
                  f"({walk:,} per task); with a manifest {read * args.tasks + walk:,} "
                  f"({read:,} per task, plus the one walk)")  # fmt: skip
        print(f"  directory walks of the input: {args.tasks} without a manifest, 1 with it")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "")
    main()
