"""Bucket to bucket against local disk: throughput of a first run and what a rerun costs.

Starts moto's S3 server on 127.0.0.1 (the test extra), makes N small text files, and runs
the wordcount example on them three ways, each a first run and a rerun:
local -> local, and s3 -> s3 on `serial` and `mp`; and against a hand-written boto3 loop
(list, then a GET and a PUT per object, one process) over the same bucket. Prints items/s, the rerun's wall time,
and the requests each run made (from the server's access log: LIST, GET, HEAD, PUT...).

    python bench/bench_objects.py [--items 2000] [--repeat 3]

moto spends a few ms of CPU per request on this machine's cores, so a bucket figure here
is the dispatcher plus a slow local store; a real store's latency is another matter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers_s3 import S3Server  # noqa: E402

WORDCOUNT = REPO / "tasks" / "wordcount.py"


def _run(env: dict[str, str], backbone: str, src: str, dst: str, logs: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", str(WORDCOUNT), "WordCount", "--backbone", backbone,
         "--log-dir", logs, "--mixin", f"input={src}", f"output={dst}"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return time.perf_counter() - began


HAND_WRITTEN = """
import json, sys, boto3
from collections import Counter
bucket, src, dst = sys.argv[1:4]
s3 = boto3.client("s3")
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src + "/")
for page in pages:
    for entry in page.get("Contents", ()):
        key = entry["Key"]
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        words = text.lower().split()
        body = json.dumps({"source": key, "words": len(words), "top": Counter(words).most_common(10)})
        s3.put_object(Bucket=bucket, Key=dst + key[len(src):] + ".json", Body=body.encode())
"""


def _hand_written(env: dict[str, str], bucket: str, dst: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", HAND_WRITTEN, bucket, "in", dst], env=env, check=True)
    return time.perf_counter() - began


def rerun_requests(n: int) -> None:
    """The requests of a rerun over `n` done single-object outputs (S3's 1,000-key pages)."""
    from concurrent.futures import ThreadPoolExecutor

    server = S3Server.start()
    try:
        env = server.full_env(os.environ)
        bucket = server.bucket()
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp, "in")
            data.mkdir()
            names = [f"{i:06d}.txt" for i in range(n)]
            for name in names:
                (data / name).write_text("x")
            client = server.client()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda k: client.put_object(Bucket=bucket, Key=f"out/{k}.json", Body=b"{}"),
                        names,
                    )
                )
            mark = server.mark()
            took = _run(env, "mp", str(data), f"s3://{bucket}/out", str(Path(tmp, "logs")))
            asked = Counter(method for method, _ in server.requests(mark))
        shown = ", ".join(f"{m} {k}" for m, k in sorted(asked.items()))
        print(f"rerun over {n} done objects: {took:.2f}s, {sum(asked.values())} requests ({shown})")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--done", type=int, default=0,
        help="instead: put N done outputs in the bucket and count the requests of a rerun",
    )  # fmt: skip
    args = parser.parse_args()
    if args.done:
        rerun_requests(args.done)
        return
    server = S3Server.start()
    try:
        env = server.full_env(os.environ)
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp, "in")
            data.mkdir()
            for i in range(args.items):
                (data / f"{i:06d}.txt").write_text(f"the quick brown fox {i} jumps " * 20)
            bucket = server.bucket()
            server.upload_tree(data, bucket, "in")
            rows = []
            hand = [_hand_written(env, bucket, f"hand-{r}") for r in range(args.repeat)]
            rows.append(("hand-written boto3", statistics.median(hand), float("nan"), Counter()))
            for name, backbone, src in [
                ("local -> local, mp", "mp", str(data)),
                ("s3 -> s3, serial", "serial", f"s3://{bucket}/in"),
                ("s3 -> s3, mp", "mp", f"s3://{bucket}/in"),
            ]:
                firsts, reruns, asked = [], [], Counter()
                for r in range(args.repeat):
                    dst = (f"s3://{bucket}/out-{backbone}-{r}" if src.startswith("s3://")
                           else str(Path(tmp, f"out-{r}")))  # fmt: skip
                    firsts.append(_run(env, backbone, src, dst, str(Path(tmp, "logs"))))
                    mark = server.mark()
                    reruns.append(_run(env, backbone, src, dst, str(Path(tmp, "logs"))))
                    asked = Counter(method for method, _ in server.requests(mark))
                rows.append((name, statistics.median(firsts), statistics.median(reruns), asked))
        print(f"{args.items} items, medians of {args.repeat} runs (moto on 127.0.0.1)")
        print(f"{'run':<20} {'first run':>12} {'items/s':>9} {'rerun':>8}  rerun requests")
        for name, first, rerun, asked in rows:
            shown = ", ".join(f"{m} {n}" for m, n in sorted(asked.items())) or "-"
            again = "-" if rerun != rerun else f"{rerun:.2f}s"  # NaN: no rerun measured
            print(f"{name:<20} {first:>11.2f}s {args.items / first:>9.0f} {again:>8}  {shown}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
