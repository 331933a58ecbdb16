"""ModelArts operator packages: the dispatcher's cost and its overlap of the three classes.

    python bench/bench_operators.py [--files 20] [--rows 10000] [--processes 2] [--repeat 3]

1. `mp` against a direct loop: FILES JSONL files x ROWS rows through a trivial
   PreProcess / Process / PostProcess operator. Whole-command wall time of
   `dispatch PKG --backbone mp --num-process P` against one fresh interpreter that reads
   each file, calls the three classes and writes the result in one loop (the same reading
   and writing functions the adapter uses). Ratio = dispatch / loop (goal <= 0.75 with 2
   processes: parallel speed-up, not overhead).
2. `torch --device cpu` with synthetic costs (sleeps, so the figure does not depend on free
   cores): PreProcess P s in DataLoader workers, Process C s on the device thread,
   PostProcess W s on the writer thread, one file per batch. The overlap bound is
   N * max(P / workers, C, W) + P + C + W (the pipeline filling); the figure is bound /
   the run's own time as its summary line reports it (goal >= 90%). The run's time also
   holds what no overlap can hide: importing pandas in the run's process (it sets the
   stage up before the DataLoader forks); that import is timed apart and the fraction is
   printed with it added to the bound as well.

The dispatcher's own modules are byte-compiled first, as an installed package's are (an
editable install under PYTHONDONTWRITEBYTECODE=1 compiles every module on every start).

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRIVIAL = textwrap.dedent(
    """
    class PreProcess:
        def __init__(self, args):
            pass

        def __call__(self, df):
            return df.assign(n=df["text"].str.len())


    class Process:
        def __init__(self, args):
            pass

        def __call__(self, df):
            return df.assign(text=df["text"].str.upper())


    class PostProcess:
        def __init__(self, args):
            pass

        def __call__(self, df):
            return df[df["n"] > 3]
    """
)

SYNTHETIC = textwrap.dedent(
    """
    import os, time

    COSTS = [float(x) for x in os.environ["BENCH_COSTS"].split(",")]


    class PreProcess:
        def __init__(self, args):
            pass

        def __call__(self, df):
            time.sleep(COSTS[0])
            return df


    class Process:
        def __init__(self, args):
            pass

        def __call__(self, df):
            time.sleep(COSTS[1])
            return df


    class PostProcess:
        def __init__(self, args):
            pass

        def __call__(self, df):
            time.sleep(COSTS[2])
            return df
    """
)

LOOP = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[3])
    from templates.adapters.modelarts_files import read_frame, write_frame
    ns = {}
    exec(open(sys.argv[4]).read(), ns)
    src, out = sys.argv[1], sys.argv[2]
    pre, proc, post = ns["PreProcess"]({}), ns["Process"]({}), ns["PostProcess"]({})
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        frame = post(proc(pre(read_frame(os.path.join(src, name), name))))
        write_frame(frame, os.path.join(out, name), name)
    """
)


def _package(root: str, name: str, code: str) -> str:
    package = os.path.join(root, name)
    os.makedirs(os.path.join(package, "program_package"))
    with open(os.path.join(package, "program_package", "process.py"), "w") as fh:
        fh.write(code)
    return package


def _data(root: str, files: int, rows: int) -> str:
    src = os.path.join(root, "in")
    os.makedirs(src)
    for i in range(files):
        with open(os.path.join(src, f"part{i:03d}.jsonl"), "w") as fh:
            for j in range(rows):
                fh.write(json.dumps({"id": j, "text": f"row {j} of file {i} " * (j % 4 + 1)}))
                fh.write("\n")
    return src


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr}")
    return took, proc.stderr


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def bench_mp(root: str, files: int, rows: int, processes: int, repeat: int) -> None:
    package = _package(root, "trivial", TRIVIAL)
    src = _data(root, files, rows)
    loop_py = os.path.join(root, "loop.py")
    with open(loop_py, "w") as fh:
        fh.write(LOOP)
    code = os.path.join(package, "program_package", "process.py")
    loops, runs = [], []
    for r in range(repeat):
        out = os.path.join(root, f"loop{r}")
        loops.append(_timed([sys.executable, loop_py, src, out, REPO, code], _env())[0])
        out = os.path.join(root, f"mp{r}")
        command = [
            sys.executable, "-m", "dispatcher", package, "--backbone", "mp",
            "--num-process", str(processes), "--log-dir", os.path.join(root, "logs"),
            "--mixin", f"input={src}", f"output={out}",
        ]  # fmt: skip
        runs.append(_timed(command, _env())[0])
    loop, run = statistics.median(loops), statistics.median(runs)
    print(f"mp: {files} JSONL files x {rows} rows, {processes} processes, median of {repeat}")
    print(f"  direct loop (one process): {loop:.2f}s   dispatch mp: {run:.2f}s")
    print(f"  ratio dispatch / loop: {run / loop:.2f}x (goal <= 0.75x); cpus {os.cpu_count()}")


def bench_torch(root: str, items: int, costs: tuple[float, float, float], workers: int) -> None:
    package = _package(root, "synthetic", SYNTHETIC)
    src = os.path.join(root, "small")
    os.makedirs(src)
    for i in range(items):
        with open(os.path.join(src, f"f{i:03d}.jsonl"), "w") as fh:
            fh.write(json.dumps({"text": f"item {i}"}) + "\n")
    command = [
        sys.executable, "-m", "dispatcher", package, "--backbone", "torch", "--device", "cpu",
        "--num-workers", str(workers), "--batch-size", "1",
        "--log-dir", os.path.join(root, "logs"),
        "--mixin", f"input={src}", f"output={os.path.join(root, 'tout')}",
    ]  # fmt: skip
    _, err = _timed(command, _env(BENCH_COSTS=",".join(map(str, costs))))
    found = re.search(r"\(\d+ ok, \d+ failed\), ([\d.]+)s", err)
    if found is None:
        sys.exit(f"no run time in the summary:\n{err}")
    took = float(found.group(1))
    pre, comp, post = costs
    bound = items * max(pre / workers, comp, post) + pre + comp + post
    fixed = _pandas_import_seconds()
    print(f"torch cpu: {items} files, PreProcess {pre}s ({workers} workers), Process {comp}s,")
    print(f"  PostProcess {post}s: run {took:.2f}s, overlap bound {bound:.2f}s,")
    print(f"  fraction of the bound: {bound / took:.0%} (goal >= 90%);")
    print(
        f"  with importing pandas ({fixed:.2f}s, no overlap can hide it) added to the bound: "
        f"{(bound + fixed) / took:.0%}"
    )


def _pandas_import_seconds() -> float:
    """How long `import pandas` takes in a fresh interpreter here (median of 3)."""
    code = "import time; t = time.perf_counter(); import pandas; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return statistics.median(runs)


def _compile_own_modules() -> None:
    """Byte-compile the dispatcher's packages, as an installed package is."""
    import compileall

    for package in ("dispatcher", "backbones", "templates"):
        compileall.compile_dir(os.path.join(REPO, package), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--torch-items", type=int, default=60)
    parser.add_argument("--costs", default="0.04,0.03,0.03", help="PreProcess,Process,PostProcess")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["mp", "torch"])
    opts = parser.parse_args()
    _compile_own_modules()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(prefix="bench-operators-", dir=base)
    try:
        if opts.only in (None, "mp"):
            bench_mp(root, opts.files, opts.rows, opts.processes, opts.repeat)
        if opts.only in (None, "torch"):
            costs = tuple(float(x) for x in opts.costs.split(","))
            bench_torch(root, opts.torch_items, costs, opts.workers)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
