"""Peak memory of `dispatch --plan` over 1,000,000 items.

The items come from a JSONL list of relative paths (how large datasets are usually
handed over: a manifest, not a fresh walk of a network filesystem), spread over 1,000
folders, read by a template task (`InputFromJsonl` + `OutputWithExtension`). Half of the
items are given finished outputs, so the plan both reads listings and filters.

    python bench/bench_plan_memory.py                  # 1,000,000 items under $TMPDIR
    python bench/bench_plan_memory.py --items 200000 --done 0

Prints the child's peak RSS (ru_maxrss) and wall time; it never fails on a figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

TASK = """
from dispatcher import Task
from templates import InputFromJsonl, OutputWithExtension, cpu_task


@cpu_task(input_mode=InputFromJsonl(), output_mode=OutputWithExtension(".json"))
class Listed(Task):
    def process(self, input, output):
        with open(output, "w") as fh:
            fh.write(input)
"""

FOLDERS = 1000


def build(data: str, items: int, done: int) -> tuple[str, str, str]:
    listing, out, task = (os.path.join(data, n) for n in ("items.jsonl", "output", "task.py"))
    marker = os.path.join(data, f".complete-{items}-{done}")
    if os.path.exists(marker):
        return listing, out, task
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    start = time.perf_counter()
    per_folder = -(-items // FOLDERS)
    with open(listing, "w") as fh:
        for i in range(items):
            fh.write(f'"videos/part-{i // per_folder:04d}/clip-{i:08d}.mp4"\n')
    # Finished outputs for every second item of the first `done`.
    for i in range(0, min(done, items), 2):
        folder = os.path.join(out, "videos", f"part-{i // per_folder:04d}")
        if i % per_folder in (0, 1):
            os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"clip-{i:08d}.mp4.json"), "w"):
            pass
    with open(task, "w") as fh:
        fh.write(TASK)
    open(marker, "w").close()
    print(f"built a {items}-row JSONL list and {(min(done, items) + 1) // 2} outputs "
          f"in {time.perf_counter() - start:.1f}s under {data}")  # fmt: skip
    return listing, out, task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, default=200_000, help="items (every 2nd) done")
    parser.add_argument(
        "--data",
        default=os.path.join(tempfile.gettempdir(), "shard-dispatch-bench", "plan-memory"),
    )
    args = parser.parse_args()
    data = os.path.join(args.data, f"{args.items}-{args.done}")
    listing, out, task = build(data, args.items, args.done)
    logs = tempfile.mkdtemp(prefix="plan-logs-")
    command = [
        sys.executable, "-m", "dispatcher", task, "Listed", "--backbone", "serial", "--plan",
        "--log-dir", logs, "--mixin", f"input={listing}", f"output={out}",
    ]  # fmt: skip
    baseline = [sys.executable, "-m", "dispatcher", "-hk"]

    def measure(argv: list[str]) -> tuple[float, float, str]:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        stdout = child.stdout.read() if child.stdout else ""
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{argv} failed: {child.stderr.read() if child.stderr else ''}")
        return usage.ru_maxrss / 1024, wall, stdout  # Linux reports KiB

    idle_rss, _, _ = measure(baseline)
    rss, wall, stdout = measure(command)
    print(stdout.strip())
    print(f"--plan over {args.items} JSONL items: peak RSS {rss:.0f} MB, wall {wall:.2f}s "
          f"(target <= 400 MB)")  # fmt: skip
    print(f"for scale: `dispatch -hk` peaks at {idle_rss:.0f} MB; "
          f"{(rss - idle_rss) * 1024 * 1024 / args.items:.0f} bytes per item above it")  # fmt: skip


if __name__ == "__main__":
    main()
