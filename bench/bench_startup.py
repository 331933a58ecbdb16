"""Median wall time of `dispatch -hk` (start-up cost paid by every command).

python bench/bench_startup.py [runs]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    command = [shutil.which("dispatch") or "dispatch", "-hk"]
    subprocess.run(command, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    bare = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        bare.append(time.perf_counter() - start)
    print(
        f"dispatch -hk: median {statistics.median(times):.3f} s over {runs} runs "
        f"(min {min(times):.3f} s); bare python start-up median {statistics.median(bare):.3f} s"
    )


if __name__ == "__main__":
    main()
