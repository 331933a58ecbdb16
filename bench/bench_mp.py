"""The `mp` backbone against a plain loop, and its per-item overhead.

    python bench/bench_mp.py [--items 20000] [--processes 2] [--repeat 3]

1. Small CPU items: N text files of ~2 KB (in /dev/shm unless --dir says otherwise);
   each item reads one, tokenises it, counts words and word pairs, fingerprints it and
   writes a small JSON file (atomically). Whole-command wall time of
   `dispatch ... --backbone mp --num-process P` (start-up, plan, run, report) against a
   plain single-process loop doing the same work in a fresh interpreter, and the same
   command with `--chunksize 1` (one pipe round trip per item), plus the CPU time each
   used: on a busy machine the wall times say little, the CPU times still show overhead.
2. Trivial items (process() does nothing, no outputs): the time `mp` adds per item,
   measured as its run time per item against the `serial` backbone's.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

TASK = textwrap.dedent(
    """
    import hashlib, json, os, re
    from collections import Counter
    from dispatcher import Task, Placeholder, atomic_write
    from templates import InputByExtensions, OutputWithExtension, cpu_task

    WORD = re.compile(r"[a-z]+")

    def summarise(src):
        # a small text-cleaning step: tokenise, count words and word pairs, fingerprint
        with open(src, encoding="utf-8") as fh:
            text = fh.read()
        words = WORD.findall(text.lower())
        pairs = Counter(zip(words, words[1:])).most_common(10)
        return {
            "words": len(words),
            "top": Counter(words).most_common(10),
            "pairs": [" ".join(pair) for pair, _ in pairs],
            "sha1": hashlib.sha1(text.encode()).hexdigest(),
        }

    def work(src, dst):
        record = summarise(src)
        with atomic_write(dst) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)

    @cpu_task(
        input=Placeholder(str),
        output=Placeholder(str),
        input_mode=InputByExtensions(exts=[".txt"]),
        output_mode=OutputWithExtension(".json"),
    )
    class SmallTemplate(Task):
        # the same work declared with a template: done items found from listings

        def process(self, input, output):
            with open(output, "w", encoding="utf-8") as fh:
                json.dump(summarise(input), fh)

    class Small(Task):
        mixin = {"input": Placeholder(str), "output": Placeholder(str)}

        def generate_tasks(self):
            for name in os.listdir(self.mixin.input):
                yield {"name": name}

        def item_key(self, item):
            return item["name"]

        def is_executed(self, name):
            return os.path.exists(os.path.join(self.mixin.output, name + ".json"))

        def process(self, name):
            work(os.path.join(self.mixin.input, name),
                 os.path.join(self.mixin.output, name + ".json"))

    class Trivial(Task):
        mixin = {"n": Placeholder(int)}

        def generate_tasks(self):
            for i in range(self.mixin.n):
                yield {"i": i}

        def item_key(self, item):
            return f"{item['i']:08d}"

        def process(self, i):
            pass
    """
)

PLAIN_LOOP = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {folder!r})
    from bench_task import work
    src, dst = {src!r}, {dst!r}
    for name in sorted(os.listdir(src)):
        work(os.path.join(src, name), os.path.join(dst, name + ".json"))
    """
)

PLAIN_SPLIT = textwrap.dedent(
    """
    import subprocess, sys
    part = {part!r}
    procs = [subprocess.Popen([sys.executable, "-c", part.format(k=k)]) for k in range({n})]
    sys.exit(max(p.wait() for p in procs))
    """
)
"""The plain loop split over P processes at once, each doing every P-th file: what running
P processes at once costs on this machine by itself (shared caches, frequency, a host's
hyperthreads), with no dispatcher at all."""

PLAIN_PART = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {folder!r})
    from bench_task import work
    src, dst = {src!r}, {dst!r}
    for name in sorted(os.listdir(src))[{{k}}::{n}]:
        work(os.path.join(src, name), os.path.join(dst, name + ".json"))
    """
)

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
]


def make_dataset(folder: str, count: int) -> None:
    os.makedirs(folder)
    for i in range(count):
        words = [WORDS[(i * 7 + j * 13) % len(WORDS)] for j in range(300)]
        with open(os.path.join(folder, f"doc{i:06d}.txt"), "w", encoding="utf-8") as fh:
            fh.write(" ".join(words))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: str) -> tuple[float, float]:
    """Wall time and CPU time (the command and its workers, user + system)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return wall, _children_cpu() - cpu


def run_seconds(logs: str) -> float:
    """The run time of the latest run record (after start-up and the plan)."""
    records = glob.glob(os.path.join(logs, "*", "*", "run.json"))
    with open(max(records, key=os.path.getmtime), encoding="utf-8") as fh:
        return float(json.load(fh)["wall_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure (median kept)")
    parser.add_argument(
        "--template-only",
        action="store_true",
        help="only the plain loop and the template task under mp (the per-item overhead figure)",
    )
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the files go (default: /dev/shm when present, so disk writeback does not "
        "drown the CPU figures; pass a disk folder to measure with it)",
    )
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="bench-mp-", dir=args.dir)
    try:
        task_file = os.path.join(root, "bench_task.py")
        with open(task_file, "w", encoding="utf-8") as fh:
            fh.write(TASK)
        src, dst = os.path.join(root, "in"), os.path.join(root, "out")
        make_dataset(src, args.items)
        dispatch = [sys.executable, "-m", "dispatcher", task_file]
        logs = ["--log-dir", os.path.join(root, "logs")]

        def fresh() -> None:
            shutil.rmtree(dst, ignore_errors=True)

        def median_of(command: list[str]) -> tuple[float, float, float]:
            """Medians of wall time, CPU time and the summary's run time."""
            walls, cpus, runs = [], [], []
            for _ in range(args.repeat):
                fresh()
                wall, cpu = timed(command, root)
                walls.append(wall)
                cpus.append(cpu)
                runs.append(run_seconds(logs[1]) if "dispatcher" in command else float("nan"))
            return statistics.median(walls), statistics.median(cpus), statistics.median(runs)

        plain_code = PLAIN_LOOP.format(folder=root, src=src, dst=dst)
        mp_cmd = [*dispatch, "Small", "--backbone", "mp", "--num-process", str(args.processes)]
        mp_cmd += [*logs, "--mixin", f"input={src}", f"output={dst}"]
        template = [*mp_cmd[:4], "SmallTemplate", *mp_cmd[5:]]
        part = PLAIN_PART.format(folder=root, src=src, dst=dst, n=args.processes)
        split_code = PLAIN_SPLIT.format(part=part, n=args.processes)
        rows = [
            ("plain single-process loop", [sys.executable, "-c", plain_code]),
            (
                f"plain loop split over {args.processes} processes",
                [sys.executable, "-c", split_code],
            ),
            ("dispatch --backbone mp (template task)", template),
        ]
        if not args.template_only:
            serial = [*dispatch, "Small", "--backbone", "serial", *logs]
            rows[2:2] = [
                (
                    "dispatch --backbone serial",
                    [*serial, "--mixin", f"input={src}", f"output={dst}"],
                ),
                ("dispatch --backbone mp", mp_cmd),
            ]
            rows.append(("dispatch --backbone mp --chunksize 1", [*mp_cmd, "--chunksize", "1"]))
        # Interleaved: each round runs every command once, so a machine that gets busier
        # or quieter during the bench moves all of them alike; each ratio is taken within
        # a round (against that round's plain loop) and the median of the rounds is shown.
        walls: list[list[float]] = [[] for _ in rows]
        cpus: list[list[float]] = [[] for _ in rows]
        runs: list[list[float]] = [[] for _ in rows]
        for _ in range(args.repeat):
            for i, (_, command) in enumerate(rows):
                fresh()
                wall, cpu = timed(command, root)
                walls[i].append(wall)
                cpus[i].append(cpu)
                runs[i].append(run_seconds(logs[1]) if "dispatcher" in command else float("nan"))
        n = args.items
        print(
            f"small CPU items: {n} files in {os.path.dirname(root)}, {args.processes} processes, "
            f"{os.cpu_count()} CPUs, median of {args.repeat} interleaved rounds"
        )
        head = (
            f"{'command':<40} {'wall':>7} {'x plain':>8} {'CPU':>7} {'x CPU':>6} "
            f"{'x split':>7} {'run':>7}"
        )
        print(f"  {head}")
        for i, (label, _) in enumerate(rows):
            wall_x = statistics.median(w / p for w, p in zip(walls[i], walls[0], strict=True))
            cpu_x = statistics.median(c / p for c, p in zip(cpus[i], cpus[0], strict=True))
            split_x = statistics.median(c / p for c, p in zip(cpus[i], cpus[1], strict=True))
            print(
                f"  {label:<40} {statistics.median(walls[i]):6.2f}s {wall_x:7.2f}x "
                f"{statistics.median(cpus[i]):6.2f}s {cpu_x:5.2f}x {split_x:6.2f}x "
                f"{statistics.median(runs[i]):6.2f}s"
            )
        print("  (wall: whole command; CPU: user + system of it and all its worker processes;")
        print("   x plain / x CPU: median of each round's ratio to that round's plain loop;")
        print("   x split: CPU against the plain loop split over the same number of processes,")
        print("   i.e. the dispatcher's own cost once the machine's price of running several")
        print("   processes at once is set aside; run: after start-up and the plan)")
        if args.template_only:
            return

        trivial = [*dispatch, "Trivial", *logs, "--mixin", f"n={n}"]
        _, _, serial_trivial = median_of([*trivial, "--backbone", "serial"])
        print(f"trivial items: {n}, process() does nothing; run time per item")
        print(f"  serial backbone:          {serial_trivial / n * 1e6:6.1f} us/item")
        for procs in sorted({1, args.processes}):
            _, _, seconds = median_of([*trivial, "--backbone", "mp", "--num-process", str(procs)])
            overhead = (seconds - serial_trivial) / n * 1e6
            print(
                f"  mp, {procs} worker process(es): {seconds / n * 1e6:6.1f} us/item "
                f"({overhead:+.1f} us/item against serial, worker start-up included)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
