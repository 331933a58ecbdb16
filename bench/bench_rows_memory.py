"""Peak memory of a ModelArts mode-1 run over one large JSONL file.

A mode-1 operator package gets each input file as one DataFrame, so the file's rows all
live in the worker at once; what matters is how much more than the file that costs. This
bench writes a JSONL file of ~200-byte rows (`{"id": i, "text": "...", "score": f}`), a
trivial mode-1 package (`Process` adds the text's length as a column), and runs

    dispatch PKG --backbone B --mixin input=IN output=OUT [--num-process 2] [EXTRA ...]

while sampling the run's whole process tree every ~50 ms: the summed PSS of the dispatch
process and all its descendants (shared pages counted once, so forked mp workers are not
counted twice) and the largest single-process RSS. The same run over an empty JSONL file
gives the idle footprint (interpreter, pandas, workers), so the cost of the rows is shown
above it as well as a ratio to the file size.

    python bench/bench_rows_memory.py                       # 205 MB, serial and mp
    python bench/bench_rows_memory.py --mb 1024 --extra "--rows-per-item 50000"

Prints figures only (MB are MiB); it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

PROCESS = """
class Process:
    def __init__(self, args):
        pass

    def __call__(self, df):
        if "text" not in df:  # the empty file of the idle run
            return df
        return df.assign(n=df["text"].str.len())
"""

# fmt: off
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta",
         "theta", "iota", "kappa", "lambda", "mu", "nu", "xi"]
# fmt: on
ROW_BYTES = 200
SAMPLE_S = 0.05
MB = 1024 * 1024


@dataclass
class Peak:
    """What one run cost: the highest figures seen while it ran, and its wall time."""

    pss_mb: float = 0.0
    rss_mb: float = 0.0
    maxrss_mb: float = 0.0
    wall_s: float = 0.0


# --- inputs --------------------------------------------------------------------------------


def _row(i: int) -> str:
    """One JSONL row of about ROW_BYTES bytes; the text varies so no two rows are equal."""
    head = f'{{"id": {i}, "score": {i / 7:.6f}, "text": "'
    words = []
    size = len(head) + 3
    k = i
    while size < ROW_BYTES:
        word = WORDS[k % len(WORDS)]
        words.append(word)
        size += len(word) + 1
        k = (k * 31 + 7) % 1_000_003
    return head + " ".join(words)[: ROW_BYTES - len(head) - 3] + '"}\n'


def write_rows(path: str, mb: float) -> int:
    """Write rows to `path` until it holds `mb` MiB; returns the file's size in bytes.
    Written in blocks so even a GiB file costs the bench little memory."""
    target = int(mb * MB)
    written = 0
    i = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            block = "".join(_row(j) for j in range(i, i + 1000))
            fh.write(block)
            written += len(block.encode("utf-8"))
            i += 1000
    return os.path.getsize(path)


def write_package(folder: str) -> str:
    """A mode-1 operator package whose Process adds the text length as a column."""
    package = os.path.join(folder, "op")
    os.makedirs(os.path.join(package, "program_package"), exist_ok=True)
    with open(os.path.join(package, "operator.yaml"), "w") as fh:
        fh.write("auto-data-loading: true\n")
    with open(os.path.join(package, "program_package", "process.py"), "w") as fh:
        fh.write(PROCESS)
    return package


# --- sampling ------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/*/stat (no per-task `children` file needed)."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _tree(root: int) -> list[int]:
    tree = _children()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


def _rollup(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of `pid` in KiB; (0, 0) once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def measure(argv: list[str]) -> Peak:
    """Run `argv` to its end, sampling its process tree; exit if it fails."""
    peak = Peak()
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while True:
        rollups = [_rollup(pid) for pid in _tree(child.pid)]
        peak.pss_mb = max(peak.pss_mb, sum(p for p, _ in rollups) / 1024)
        peak.rss_mb = max(peak.rss_mb, max((r for _, r in rollups), default=0) / 1024)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(SAMPLE_S)
    peak.wall_s = time.perf_counter() - start
    # The largest RSS of the child and of every descendant it reaped, exactly (KiB).
    peak.maxrss_mb = usage.ru_maxrss / 1024
    output = child.stdout.read().decode(errors="replace") if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{shlex.join(argv)} failed:\n{output}")
    return peak


# --- runs ----------------------------------------------------------------------------------


def command(package: str, inputs: str, out: str, logs: str, backbone: str, extra: str) -> list[str]:
    argv = [sys.executable, "-m", "dispatcher", package, "--backbone", backbone]
    argv += ["--log-dir", logs, "--mixin", f"input={inputs}", f"output={out}"]
    if backbone == "mp":
        argv += ["--num-process", "2"]
    return argv + shlex.split(extra)


def run_once(work: str, package: str, inputs: str, backbone: str, extra: str) -> Peak:
    """One run into a fresh output folder, removed afterwards (it may be as large as the
    input, and a left output would make the next run skip the item)."""
    out = tempfile.mkdtemp(prefix="out-", dir=work)
    logs = tempfile.mkdtemp(prefix="logs-", dir=work)
    try:
        return measure(command(package, inputs, out, logs, backbone, extra))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def report(label: str, peak: Peak, idle: Peak, size: int) -> None:
    file_mb = size / MB
    print(
        f"  {label:<6} peak PSS {peak.pss_mb:7.0f} MB ({peak.pss_mb / file_mb:4.2f}x file, "
        f"{peak.pss_mb - idle.pss_mb:6.0f} MB above idle) | peak RSS {peak.rss_mb:7.0f} MB "
        f"({peak.rss_mb / file_mb:4.2f}x, {peak.rss_mb - idle.rss_mb:6.0f} above idle; "
        f"ru_maxrss {peak.maxrss_mb:.0f}) | {peak.wall_s:6.1f}s"
    )


def bench(work: str, mb: float, backbones: list[str], extra: str, repeat: int) -> None:
    package = write_package(work)
    full, empty = os.path.join(work, "full"), os.path.join(work, "empty")
    for folder in (full, empty):
        os.makedirs(folder, exist_ok=True)
    open(os.path.join(empty, "rows.jsonl"), "w").close()
    start = time.perf_counter()
    size = write_rows(os.path.join(full, "rows.jsonl"), mb)
    rows = size // ROW_BYTES
    print(f"input: {size / MB:.0f} MB JSONL (~{rows:,} rows of ~{ROW_BYTES} bytes), "
          f"written in {time.perf_counter() - start:.1f}s under {work}")  # fmt: skip
    print(f"extra args: {extra or '(none)'}; python {sys.version.split()[0]}, "
          f"pandas {_pandas_version()}")  # fmt: skip
    for backbone in backbones:
        print(f"--backbone {backbone}:")
        idle = run_once(work, package, empty, backbone, extra)
        print(
            f"  idle   peak PSS {idle.pss_mb:7.0f} MB | peak RSS {idle.rss_mb:7.0f} MB "
            f"(ru_maxrss {idle.maxrss_mb:.0f}) | {idle.wall_s:6.1f}s  (empty JSONL file)"
        )
        for n in range(repeat):
            report(f"run {n + 1}", run_once(work, package, full, backbone, extra), idle, size)


def _pandas_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import pandas; print(pandas.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def _default_tmp(mb: float) -> str | None:
    """/dev/shm where it has room for the input and an output (so disk speed is out of
    the figures), else the system's temporary folder."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return None
    return "/dev/shm" if free > 3 * mb * MB else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=205, help="input size in MiB (205)")
    parser.add_argument("--backbone", default="serial,mp", help="comma-separated (serial,mp)")
    parser.add_argument("--extra", default="", help="more dispatch args, one string")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backbone (1)")
    parser.add_argument("--tmp", help="folder for the data (default /dev/shm if it has room)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rows-memory-", dir=args.tmp or _default_tmp(args.mb))
    try:
        bench(work, args.mb, args.backbone.split(","), args.extra, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
