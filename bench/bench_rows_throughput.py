"""ModelArts mode-1 operator over JSONL rows: one big file in row ranges, and a peer (datatrove).

    python bench/bench_rows_throughput.py [--rows 2000000] [--rows-per-item 50000]
        [--files 40] [--rows-per-file 5000] [--repeat 3] [--tmp DIR]
        [--datatrove-python PATH] [--skip-big] [--skip-peer]

Rows are `{"id": i, "text": "<random words>", "score": float}`, about 200 bytes each. The
operator is a package generated in the temp folder: `operator.yaml` with
`auto-data-loading: true` and a `Process` alone that returns
`df.assign(text=df["text"].str.upper())`, so its output holds the same fields as the
peer's. Every figure is a whole command's wall time (interpreter start, imports, reading,
the operator, writing, exit), the median of REPEAT runs (their range in brackets: the
figures are noisy on a small shared machine), each into a fresh output folder.
The input is written once, before the first run, so it is in the page cache (or in memory,
under /dev/shm) for all of them.

1. One big file of ROWS rows:
   (a) `dispatch PKG --backbone mp --num-process 2 --rows-per-item N`: the file is split
       into items of N rows each, spread over the two worker processes;
   (b) the same without `--rows-per-item`: the file is one item, so one worker reads,
       converts and writes all of it while the other idles;
   (c) one fresh interpreter that does what the adapter does for an item, without the
       dispatcher: `read_frame` (the adapter's JSONL reader: `json.loads` per line, then a
       DataFrame), `Process`, `write_frame` (`DataFrame.to_json(lines=True)`).
   Ratios (a)/(c) and (b)/(c): below 1 is a parallel gain, above 1 the dispatcher's cost.
2. Peer comparison with datatrove, both sides with two worker processes:
   - dispatch: `dispatch PKG --backbone mp --num-process 2`, one item per input file (with
     `--rows-per-item N` for the big file); rows are read with `json.loads` into a pandas
     DataFrame per item, uppercased column-wise, written with pandas' JSON writer;
   - datatrove: a script run by the interpreter that has datatrove,
     `LocalPipelineExecutor([JsonlReader(IN), uppercase step, JsonlWriter(OUT,
     compression=None, adapter=row)], tasks=T, workers=2)` with its logging folder in
     the temp folder and its default start method (forkserver). Files are dealt to the T
     tasks (rank r reads files r, r+T, ...); each task streams its files one `Document` at
     a time through orjson, a plain generator step uppercases `doc.text`, and the writer
     writes one `RANK.jsonl` per task.
     The reader moves `id` to `Document.id` and `score` to its metadata; the `row` adapter
     writes them back as `{"id", "text", "score"}` (datatrove's default adapter drops
     falsy fields, id 0 among them), so both sides write the same rows, uncompressed.
   Two layouts: FILES files of ROWS_PER_FILE rows, and the big file of part 1. datatrove
   has no unit below a file: the big file is one task's work whatever T is.

The dispatcher's own modules are byte-compiled first, as an installed package's are (an
editable install under PYTHONDONTWRITEBYTECODE=1 compiles every module on every start).

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESSES = 2
DEFAULT_DATATROVE = "/tmp/dt-venv/bin/python"

UPPER = textwrap.dedent(
    """
    class Process:
        def __init__(self, args):
            pass

        def __call__(self, df):
            return df.assign(text=df["text"].str.upper())
    """
)

DIRECT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[3])
    from templates.adapters.modelarts_files import read_frame, write_frame
    ns = {}
    exec(open(sys.argv[4]).read(), ns)
    src, out = sys.argv[1], sys.argv[2]
    process = ns["Process"]({})
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        frame = process(read_frame(os.path.join(src, name), name))
        write_frame(frame, os.path.join(out, name), name)
    """
)

DATATROVE = textwrap.dedent(
    """
    import sys

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter


    def upper(data, rank, world_size):
        for doc in data:
            doc.text = doc.text.upper()
            yield doc


    def row(self, doc):
        return {"id": doc.id, "text": doc.text, **doc.metadata}


    if __name__ == "__main__":
        src, out, logs, tasks, workers = sys.argv[1:6]
        LocalPipelineExecutor(
            pipeline=[
                JsonlReader(src, compression=None, add_file_path=False),
                upper,
                JsonlWriter(out, compression=None, adapter=row),
            ],
            tasks=int(tasks),
            workers=int(workers),
            logging_dir=logs,
        ).run()
    """
)

VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "shard dispatch worker item output input frame row column table stage writer reader"
)
WORDS = VOCABULARY.split()


# --- data and packages ------------------------------------------------------------------


def _write_rows(path: str, count: int, seed: int) -> None:
    """COUNT rows of about 200 bytes: an id, ~150 characters of words, a float score."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(count):
            text = " ".join(rng.choices(WORDS, k=rng.randint(18, 26)))
            fh.write(json.dumps({"id": i, "text": text, "score": rng.random()}) + "\n")


def _big_input(root: str, rows: int) -> str:
    """A folder holding one JSONL file of ROWS rows."""
    src = os.path.join(root, "big")
    os.makedirs(src)
    _write_rows(os.path.join(src, "rows.jsonl"), rows, seed=0)
    return src


def _files_input(root: str, files: int, rows: int) -> str:
    """A folder of FILES JSONL files of ROWS rows each."""
    src = os.path.join(root, "files")
    os.makedirs(src)
    for i in range(files):
        _write_rows(os.path.join(src, f"part{i:03d}.jsonl"), rows, seed=i + 1)
    return src


def _package(root: str) -> str:
    """The mode-1 operator package: `auto-data-loading: true` and the uppercasing Process."""
    package = os.path.join(root, "upper")
    os.makedirs(os.path.join(package, "program_package"))
    with open(os.path.join(package, "operator.yaml"), "w") as fh:
        fh.write("auto-data-loading: true\n")
    with open(os.path.join(package, "program_package", "process.py"), "w") as fh:
        fh.write(UPPER)
    return package


def _script(root: str, name: str, text: str) -> str:
    path = os.path.join(root, name)
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write(text)
    return path


def _rows_out(folder: str) -> int:
    """Lines in the visible JSONL files under FOLDER: a check that every row came out."""
    total = 0
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.endswith(".jsonl") and not name.startswith("."):
                with open(os.path.join(base, name), "rb") as fh:
                    total += sum(
                        chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")
                    )
    return total


# --- running ----------------------------------------------------------------------------


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float | None, str]:
    """(wall seconds, stderr); None for the seconds when the command failed, so that one
    configuration not being available (an option not there yet) spoils no other figure."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        print(f"  failed (exit {proc.returncode}): {' '.join(command)}")
        print(textwrap.indent(tail or "(no stderr)", "    | "))
        return None, proc.stderr
    return took, proc.stderr


def _env() -> dict[str, str]:
    """The caller's environment with the repo first on the path and bytecode writing on,
    as an installed package runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


Result = tuple[list[float], int]
"""(the seconds of each run, empty where one failed; rows written by the last run)."""


def _median_of(root: str, label: str, command_for, repeat: int) -> Result:
    """REPEAT runs of `command_for(out)`, each into a fresh output folder that is removed
    afterwards (the big outputs would otherwise fill /dev/shm); stops at the first failure."""
    runs, rows = [], 0
    for r in range(repeat):
        out = os.path.join(root, f"{label}-{r}")
        took, _ = _timed(command_for(out), _env())
        if took is None:
            shutil.rmtree(out, ignore_errors=True)
            return [], 0
        runs.append(took)
        rows = _rows_out(out)
        shutil.rmtree(out, ignore_errors=True)
    return runs, rows


@functools.cache
def dispatch_mp(root: str, package: str, src: str, rows_per_item: int, repeat: int):
    """dispatch mp with two processes over SRC (rows_per_item 0: one item per file); cached,
    so the peer comparison reuses part 1's figure for the same command."""
    label = f"mp-{os.path.basename(src)}-{rows_per_item}"

    def command(out: str) -> list[str]:
        split = ["--rows-per-item", str(rows_per_item)] if rows_per_item else []
        return [
            sys.executable, "-m", "dispatcher", package, "--backbone", "mp",
            "--num-process", str(PROCESSES), *split,
            "--log-dir", os.path.join(root, "logs", label),
            "--mixin", f"input={src}", f"output={out}",
        ]  # fmt: skip

    return _median_of(root, label, command, repeat)


def direct(root: str, package: str, src: str, repeat: int):
    """The adapter's read, Process and write in one fresh interpreter, no dispatcher."""
    script = _script(root, "direct.py", DIRECT)
    code = os.path.join(package, "program_package", "process.py")
    label = f"direct-{os.path.basename(src)}"
    return _median_of(
        root, label, lambda out: [sys.executable, script, src, out, REPO, code], repeat
    )


def datatrove(root: str, python: str, src: str, tasks: int, repeat: int):
    """The datatrove pipeline as a whole command; a fresh logging folder per run, since
    datatrove skips the tasks its logging folder records as completed."""
    script = _script(root, "datatrove_upper.py", DATATROVE)
    label = f"datatrove-{os.path.basename(src)}"

    def command(out: str) -> list[str]:
        logs = tempfile.mkdtemp(prefix="dt-logs-", dir=root)
        return [python, script, src, out, logs, str(tasks), str(PROCESSES)]

    return _median_of(root, label, command, repeat)


# --- reports ----------------------------------------------------------------------------


def _fmt(result: Result, rows: int) -> str:
    """Median seconds, their range, rows/s, and a warning where rows went missing."""
    runs, out = result
    if not runs:
        return "failed"
    took = statistics.median(runs)
    spread = f"[{min(runs):.2f}-{max(runs):.2f}]"
    check = "" if out == rows else f"  (wrote {out:,} rows, expected {rows:,})"
    return f"{took:7.2f}s {spread:<13} {rows / took:>10,.0f} rows/s{check}"


def _ratio(top: Result, bottom: Result) -> str:
    if not top[0] or not bottom[0]:
        return "n/a"
    return f"{statistics.median(top[0]) / statistics.median(bottom[0]):.2f}x"


def bench_big(root: str, package: str, src: str, rows: int, per_item: int, repeat: int) -> None:
    print(f"1. one JSONL file of {rows:,} rows, median of {repeat} (cpus {os.cpu_count()})")
    a = dispatch_mp(root, package, src, per_item, repeat)
    print(f"  {f'(a) dispatch mp {PROCESSES}, --rows-per-item {per_item}':<44}{_fmt(a, rows)}")
    b = dispatch_mp(root, package, src, 0, repeat)
    print(f"  {f'(b) dispatch mp {PROCESSES}, one item':<44}{_fmt(b, rows)}")
    c = direct(root, package, src, repeat)
    print(f"  {'(c) direct, one interpreter':<44}{_fmt(c, rows)}")
    print(f"  (a)/(c) {_ratio(a, c)}   (b)/(c) {_ratio(b, c)}")


def bench_peer(
    root: str, package: str, layouts: list[tuple[str, str, int, int]], opts: argparse.Namespace
) -> None:
    python = opts.datatrove_python
    if not python or not os.path.exists(python):
        print(f"2. peer comparison skipped: no datatrove interpreter ({python or 'none given'})")
        return
    tasks = opts.datatrove_tasks or PROCESSES
    print(f"2. dispatch mp {PROCESSES} vs datatrove (tasks={tasks}, workers={PROCESSES}), "
          f"median of {opts.repeat}")  # fmt: skip
    for title, src, rows, per_item in layouts:
        print(f"  {title}")
        d = dispatch_mp(root, package, src, per_item, opts.repeat)
        split = f", --rows-per-item {per_item}" if per_item else ""
        print(f"    {'dispatch' + split:<42}{_fmt(d, rows)}")
        t = datatrove(root, python, src, tasks, opts.repeat)
        print(f"    {'datatrove':<42}{_fmt(t, rows)}")
        print(f"    datatrove / dispatch: {_ratio(t, d)}")


def _compile_own_modules() -> None:
    """Byte-compile the dispatcher's packages, as an installed package is."""
    import compileall

    for package in ("dispatcher", "backbones", "templates"):
        compileall.compile_dir(os.path.join(REPO, package), quiet=1)


def _tmp_base(need: int) -> str | None:
    """/dev/shm where it has room for NEED bytes (no disk in the figures), else the
    system's temp folder."""
    if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > need:
        return "/dev/shm"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the big file")
    parser.add_argument("--rows-per-item", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows-per-file", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", help="folder for data and outputs (default: /dev/shm if room)")
    parser.add_argument(
        "--datatrove-python",
        default=DEFAULT_DATATROVE if os.path.exists(DEFAULT_DATATROVE) else None,
        help=f"an interpreter that imports datatrove (default: {DEFAULT_DATATROVE} if there)",
    )
    parser.add_argument("--datatrove-tasks", type=int, default=0, help="default: 2")
    parser.add_argument("--skip-big", action="store_true", help="skip part 1")
    parser.add_argument("--skip-peer", action="store_true", help="skip part 2")
    opts = parser.parse_args()
    _compile_own_modules()
    # input, one output at a time, and slack: about 200 bytes a row each
    need = 3 * 220 * (opts.rows + opts.files * opts.rows_per_file)
    root = tempfile.mkdtemp(prefix="bench-rows-", dir=opts.tmp or _tmp_base(need))
    try:
        package = _package(root)
        big = _big_input(root, opts.rows) if not (opts.skip_big and opts.skip_peer) else ""
        if not opts.skip_big:
            bench_big(root, package, big, opts.rows, opts.rows_per_item, opts.repeat)
        if not opts.skip_peer:
            files = _files_input(root, opts.files, opts.rows_per_file)
            layouts = [
                (f"{opts.files} files x {opts.rows_per_file:,} rows", files,
                 opts.files * opts.rows_per_file, 0),
                (f"one file of {opts.rows:,} rows (datatrove: one task reads it all)", big,
                 opts.rows, opts.rows_per_item),
            ]  # fmt: skip
            bench_peer(root, package, layouts, opts)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
