"""A ClearML `Preprocess` class through `dispatch` against calling it directly.

    python bench/bench_operators_clearml.py [--files 20] [--rows 10000] [--processes 2]

Each row goes through a trivial preprocess / process / postprocess (a few string and
arithmetic operations) and is written as a JSONL row. Compared: the whole command
`dispatch preprocess.py Preprocess --backbone mp --num-process P` (start-up, plan, run,
report) against one fresh interpreter calling the three methods in one loop per file and
writing the same rows. Prints the wall-time ratio; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

OPERATOR = textwrap.dedent(
    """
    class Preprocess:
        def preprocess(self, body, state, collect):
            state["id"] = body["id"]
            return body["text"].split()

        def process(self, data, state, collect):
            return sum(len(w) for w in data)

        def postprocess(self, data, state, collect):
            return {"id": state["id"], "chars": data}
    """
)

DIRECT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from preprocess import Preprocess
    op = Preprocess()
    src, dst = sys.argv[2], sys.argv[3]
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as fin, open(os.path.join(dst, name), "w") as fout:
            for line in fin:
                state = {}
                data = op.preprocess(json.loads(line), state, None)
                data = op.process(data, state, None)
                fout.write(json.dumps(op.postprocess(data, state, None)) + "\\n")
    """
)


def _timed(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def _read(*parts: str) -> bytes:
    with open(os.path.join(*parts), "rb") as fh:
        return fh.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    root = tempfile.mkdtemp(
        prefix="bench-clearml-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    try:
        with open(os.path.join(root, "preprocess.py"), "w") as fh:
            fh.write(OPERATOR)
        with open(os.path.join(root, "direct.py"), "w") as fh:
            fh.write(DIRECT)
        data = os.path.join(root, "data")
        os.makedirs(data)
        for f in range(args.files):
            with open(os.path.join(data, f"part{f:03d}.jsonl"), "w") as fh:
                for r in range(args.rows):
                    fh.write(
                        json.dumps({"id": r, "text": f"row {r} of file {f} with a few words"})
                        + "\n"
                    )
        direct = _timed(
            [sys.executable, "direct.py", root, data, os.path.join(root, "direct")], root
        )
        dispatched = _timed(
            [
                sys.executable,
                "-m",
                "dispatcher",
                "preprocess.py",
                "Preprocess",
                "--backbone",
                "mp",
                "--num-process",
                str(args.processes),
                "--log-dir",
                os.path.join(root, "logs"),
                "--mixin",
                f"input={data}",
                f"output={os.path.join(root, 'out')}",
            ],
            root,
        )
        same = all(_read(root, "direct", n) == _read(root, "out", n) for n in os.listdir(data))
        print(
            f"{args.files} files x {args.rows} rows: direct loop {direct:.2f}s, "
            f"dispatch mp x{args.processes} {dispatched:.2f}s, ratio {dispatched / direct:.2f}x, "
            f"outputs identical: {same}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
