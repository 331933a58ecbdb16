"""The per-item path against the script a user would otherwise write.

    python bench/bench_per_item.py [--items 20000 200000] [--repeat 5] [--syscalls]

N small text files (in /dev/shm unless --dir says otherwise), one JSON output each, made by
the same function in every contender, so the outputs are byte-identical (checked):

- `loop`: one process walks the input and makes each output (tmp file + `os.replace`);
- `pool`: a hand-written `multiprocessing.Pool(P)`: the same walk, `imap_unordered` in
  chunks of 64, tmp file + `os.replace` per item;
- `dispatch`: `dispatch --backbone mp --num-process P` on a template task
  (`InputByExtensions` + `OutputWithExtension`), the way a user declares this job;
- `dispatch-plain` (with --plain): a plain `Task` writing through `atomic_write`.

After one warm-up run of each, rounds are interleaved (each round runs every contender
once, each from an empty output root) and every ratio is taken within a round, then the median over rounds is printed: a
machine that gets busier or quieter moves all contenders alike. Wall is the whole command
(start-up, walk, run, report); CPU is user + system of it and all its processes.

`--syscalls` runs each contender once under `strace -c -f` at N and at N/10 items and
prints the metadata system calls (opens, renames, unlinks, stats, locks, listings...)
each committed item costs: the difference between the two counts over the difference in
items, so start-up and imports cancel out.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

WORK = textwrap.dedent(
    """
    import hashlib, json, os

    def record(src):
        with open(src, encoding="utf-8") as fh:
            text = fh.read()
        return json.dumps({"chars": len(text), "words": len(text.split()),
                           "sha1": hashlib.sha1(text.encode()).hexdigest()})

    def make(src, dst):
        tmp = f"{dst}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(record(src))
        os.replace(tmp, dst)

    def walk(root):
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".txt"):
                    yield os.path.join(folder, name)
    """
)

LOOP = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {folder!r})
    from bench_work import make, walk
    src, dst = {src!r}, {dst!r}
    os.makedirs(dst, exist_ok=True)
    for path in walk(src):
        make(path, os.path.join(dst, os.path.relpath(path, src) + ".json"))
    """
)

POOL = textwrap.dedent(
    """
    import multiprocessing, os, sys
    sys.path.insert(0, {folder!r})
    from bench_work import make, walk
    src, dst = {src!r}, {dst!r}

    def one(path):
        make(path, os.path.join(dst, os.path.relpath(path, src) + ".json"))

    if __name__ == "__main__":
        os.makedirs(dst, exist_ok=True)
        with multiprocessing.Pool({processes}) as pool:
            for _ in pool.imap_unordered(one, walk(src), chunksize=64):
                pass
    """
)

TASKS = textwrap.dedent(
    """
    from dispatcher import Task, Placeholder, atomic_write
    from templates import InputByExtensions, OutputWithExtension, cpu_task
    from bench_work import record, walk
    import os

    @cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
    class Template(Task):
        def process(self, input, output):
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(record(input))

    class Plain(Task):
        mixin = {"input": Placeholder(str), "output": Placeholder(str)}

        def generate_tasks(self):
            for path in walk(self.mixin.input):
                yield {"name": os.path.relpath(path, self.mixin.input)}

        def item_key(self, item):
            return item["name"]

        def output_roots(self):
            # declared: atomic_write under it commits without per-item claims when alone
            return [self.mixin.output]

        def is_executed(self, name):
            return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

        def process(self, name):
            dst = os.path.join(self.mixin.output, name + ".json")
            with atomic_write(dst) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(record(os.path.join(self.mixin.input, name)))
    """
)

METADATA = re.compile(
    r"^(open|openat|openat2|creat|rename|renameat|renameat2|unlink|unlinkat|mkdir|mkdirat|"
    r"rmdir|stat|lstat|fstat|newfstatat|statx|access|faccessat|faccessat2|readlink|"
    r"readlinkat|flock|fcntl|getdents64|link|linkat|symlink|utimensat|chmod|fchmod)$"
)
"""System calls that ask or change the filesystem's metadata (what costs on Lustre/NFS)."""


def make_dataset(folder: str, count: int) -> None:
    os.makedirs(folder)
    for i in range(count):
        with open(os.path.join(folder, f"doc{i:07d}.txt"), "w", encoding="utf-8") as fh:
            fh.write(" ".join(f"w{(i * 7 + j * 13) % 97}" for j in range(40)))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""Bytecode caches written and used, as on a user's machine (a warm-up round writes them)."""


def run(command: list[str], cwd: str, checkout: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of a command (CPU of it and every process it waited for);
    `checkout`: import the dispatcher from there."""
    env = ENV if checkout is None else {**ENV, "PYTHONPATH": checkout}
    cpu, start = children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return wall, children_cpu() - cpu


def digest(root: str) -> str:
    """One hash of every output's relative path and bytes (outputs must match exactly);
    the run's provenance file (`.dispatch-run.<task>`) aside."""
    h = hashlib.sha1()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(n for n in files if not n.startswith(".dispatch-run.")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


class Bench:
    """The contenders' commands over one dataset in `root`."""

    def __init__(
        self, root: str, items: int, processes: int, plain: bool, baseline: str | None = None
    ) -> None:
        self.root, self.items = root, items
        self.src = os.path.join(root, f"in-{items}")
        self.dst = os.path.join(root, "out")
        if not os.path.isdir(self.src):
            make_dataset(self.src, items)
        fill = {"folder": root, "src": self.src, "dst": self.dst, "processes": processes}
        dispatch = [sys.executable, "-m", "dispatcher", os.path.join(root, "bench_tasks.py")]
        tail = ["--backbone", "mp", "--num-process", str(processes)]
        tail += ["--log-dir", os.path.join(root, "logs"), "--mixin"]
        tail += [f"input={self.src}", f"output={self.dst}"]
        self.commands = {
            "loop": [sys.executable, "-c", LOOP.format(**fill)],
            "pool": [sys.executable, "-c", POOL.format(**fill)],
            "dispatch": [*dispatch, "Template", *tail],
        }
        if plain:
            self.commands["dispatch-plain"] = [*dispatch, "Plain", *tail]
        self.checkouts: dict[str, str] = {}
        if baseline is not None:
            for name in [n for n in self.commands if n.startswith("dispatch")]:
                self.commands[f"{name}@baseline"] = self.commands[name]
                self.checkouts[f"{name}@baseline"] = baseline

    def fresh(self) -> None:
        shutil.rmtree(self.dst, ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, "logs"), ignore_errors=True)

    def timed(self, name: str) -> tuple[float, float, str]:
        self.fresh()
        wall, cpu = run(self.commands[name], self.root, self.checkouts.get(name))
        return wall, cpu, digest(self.dst)

    def syscalls(self, name: str) -> dict[str, int]:
        """Metadata system calls of one run, by name (strace -c -f)."""
        self.fresh()
        out = os.path.join(self.root, "strace.txt")
        command = ["strace", "-c", "-f", "-o", out, *self.commands[name]]
        run(command, self.root, self.checkouts.get(name))
        counts: dict[str, int] = {}
        with open(out, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 5 and parts[-1] != "total" and METADATA.match(parts[-1]):
                    counts[parts[-1]] = int(parts[3])
        return counts


def compare(bench: Bench, repeat: int) -> None:
    names = list(bench.commands)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        bench.timed(name)  # warm-up: page cache, bytecode caches
    for _ in range(repeat):
        digests = set()
        for name in names:
            wall, cpu, found = bench.timed(name)
            walls[name].append(wall)
            cpus[name].append(cpu)
            digests.add(found)
        if len(digests) != 1:
            sys.exit("the contenders' outputs differ: the comparison would mean nothing")

    def ratio(values: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(values[a], values[b], strict=True))

    print(f"{bench.items} items, median of {repeat} interleaved rounds, {os.cpu_count()} CPUs")
    print(f"  {'contender':<16} {'wall':>8} {'CPU':>8} {'wall/pool':>10} {'CPU/loop':>9}")
    for name in names:
        print(
            f"  {name:<16} {statistics.median(walls[name]):7.2f}s "
            f"{statistics.median(cpus[name]):7.2f}s {ratio(walls, name, 'pool'):9.2f}x "
            f"{ratio(cpus, name, 'loop'):8.2f}x"
        )


def count_syscalls(
    root: str, items: int, processes: int, plain: bool, baseline: str | None
) -> None:
    if shutil.which("strace") is None:
        sys.exit("--syscalls needs strace")
    small = Bench(root, max(1, items // 10), processes, plain, baseline)
    large = Bench(root, items, processes, plain, baseline)
    extra = large.items - small.items
    print(f"metadata system calls per committed item ({small.items} -> {large.items} items)")
    per_item: dict[str, dict[str, float]] = {}
    for name in large.commands:
        low, high = small.syscalls(name), large.syscalls(name)
        per_item[name] = {
            call: (high.get(call, 0) - low.get(call, 0)) / extra for call in set(low) | set(high)
        }
    for name, calls in per_item.items():
        shown = {c: round(v, 2) for c, v in sorted(calls.items()) if abs(v) >= 0.01}
        total = sum(calls.values())
        beyond = total - sum(per_item["pool"].values())
        print(f"  {name:<16} {total:5.2f} per item ({beyond:+.2f} beyond pool)  {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[20000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--plain", action="store_true", help="also a plain Task (atomic_write)")
    parser.add_argument("--syscalls", action="store_true", help="count metadata calls per item")
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run the dispatcher of another checkout (a git worktree of an older "
        "commit), interleaved with this one",
    )
    parser.add_argument(
        "--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where files go"
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-per-item-", dir=args.dir)
    try:
        for name, text in (("bench_work.py", WORK), ("bench_tasks.py", TASKS)):
            with open(os.path.join(root, name), "w", encoding="utf-8") as fh:
                fh.write(text)
        for items in args.items:
            if args.syscalls:
                count_syscalls(root, items, args.processes, args.plain, args.baseline)
            else:
                bench = Bench(root, items, args.processes, args.plain, args.baseline)
                compare(bench, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
