"""Object-store roots against a real S3-compatible server (moto's, over HTTP on 127.0.0.1):
bucket to bucket equals local, reruns list instead of asking per item, nothing partial
ever stands at a final key, errors come before any work."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, backbone_params, run_dispatch, task_file, tree
from helpers_s3 import count

TASK = task_file("storage_objects")
WORDCOUNT = REPO / "tasks" / "wordcount.py"
TEXT = REPO / "tasks" / "data" / "text"


def _inputs(root: Path, n: int = 6) -> Path:
    for i in range(n):
        path = root / ("sub" if i % 2 else "") / f"{i:02d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i]) * (100 + i))
    return root


def _dispatch(s3, *args, env=None, **kw):
    return run_dispatch(*args, env={**s3.full_env(), **(env or {})}, **kw)


def _store_tree(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every output under the prefix but the run's provenance record."""
    return {k: v for k, v in s3.tree(bucket, prefix).items() if not k.startswith(".dispatch-run")}


# On ray, the actors of the session's cluster know the store only from the driver.
@pytest.mark.parametrize("backbone", ["serial", "mp", *backbone_params(["ray"])])
def test_wordcount_runs_bucket_to_bucket_as_it_runs_locally(s3_server, tmp_path, backbone):
    s3, bucket = s3_server, s3_server.bucket()
    s3.upload_tree(TEXT, bucket, "text")
    local = run_dispatch(WORDCOUNT, "WordCount", "--backbone", backbone, "--log-dir",
                         tmp_path / "logs", "--mixin", f"input={TEXT}",
                         f"output={tmp_path / 'out'}", "top=3")  # fmt: skip
    assert local.returncode == 0, local.stderr
    args = [WORDCOUNT, "WordCount", "--backbone", backbone, "--log-dir", tmp_path / "logs",
            "--mixin", f"input=s3://{bucket}/text", f"output=s3://{bucket}/counts", "top=3"]  # fmt: skip
    done = _dispatch(s3, *args)
    assert done.returncode == 0, done.stderr
    assert _store_tree(s3, bucket, "counts") == tree(tmp_path / "out")
    mark = s3.mark()
    again = _dispatch(s3, *args)
    assert again.returncode == 0 and "all done" in again.stderr, again.stderr
    if s3.counts_requests:
        asked = s3.requests(mark)
        assert count(asked, "PUT") == 0, asked
        assert len(asked) <= 8, asked  # root checks, one listing each way, the record


@pytest.mark.parametrize("task", ["Files", "Folders", "WholeFolders"])
def test_template_outputs_in_a_bucket_equal_the_local_ones(s3_server, tmp_path, task):
    s3, bucket = s3_server, s3_server.bucket()
    data = _inputs(tmp_path / "in")
    s3.upload_tree(data, bucket, "in")
    local = run_dispatch(TASK, task, "--backbone", "mp", "--log-dir", tmp_path / "logs",
                         "--mixin", f"input={data}", f"output={tmp_path / 'out'}")  # fmt: skip
    assert local.returncode == 0, local.stderr
    args = [TASK, task, "--backbone", "mp", "--log-dir", tmp_path / "logs",
            "--mixin", f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    scratch = tmp_path / "scratch"
    done = _dispatch(s3, *args, env={"DISPATCH_SCRATCH": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert not list(scratch.rglob("*"))  # every download and staging file went with its item
    made = _store_tree(s3, bucket, "out")
    expected = tree(tmp_path / "out")
    if task == "WholeFolders":  # the commit marker of a folder whose done check is itself
        assert {k for k in made if k.endswith("/.dispatch-complete")} == {
            f"{k.rsplit('/', 1)[0]}/.dispatch-complete" for k in expected
        }
        made = {k: v for k, v in made.items() if not k.endswith("/.dispatch-complete")}
    assert made == expected
    mark = s3.mark()
    again = _dispatch(s3, *args)
    assert again.returncode == 0 and "all done" in again.stderr, again.stderr
    if s3.counts_requests:
        assert count(s3.requests(mark), "PUT") == 0


def test_a_local_input_and_a_bucket_output_mix(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    data = _inputs(tmp_path / "in")
    done = _dispatch(s3, TASK, "Files", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                     "--mixin", f"input=file://{data}", f"output=s3://{bucket}/out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(_store_tree(s3, bucket, "out")) == sorted(
        f"{p.relative_to(data).as_posix()}.bin" for p in data.rglob("*.dat")
    )


def test_a_task_that_asks_for_urls_gets_them(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    s3.upload_tree(_inputs(tmp_path / "in", 2), bucket, "in")
    done = _dispatch(s3, TASK, "Urls", "--log-dir", tmp_path / "logs", "--mixin",
                     f"input=s3://{bucket}/in", f"output={tmp_path / 'out'}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "00.dat.url").read_text() == f"s3://{bucket}/in/00.dat"


def test_a_rerun_over_done_objects_lists_them_in_pages(tmp_path):
    """The rerun of 20,000 done outputs at a twentieth of the scale: 1,000 objects on a
    server of its own that pages listings by 50 keys (S3 pages by 1,000): the same 20 pages.
    bench/bench_objects.py --done 20000 counts the full-size rerun on S3's page size."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from concurrent.futures import ThreadPoolExecutor

    from helpers_s3 import S3Server

    s3 = S3Server.start(page_size=50)
    try:
        bucket = s3.bucket()
        data = tmp_path / "in"
        data.mkdir()
        names = [f"{i:05d}.dat" for i in range(1_000)]
        for name in names:
            (data / name).write_bytes(b"")
        client = s3.client()
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda n: client.put_object(Bucket=bucket, Key=f"out/{n}.bin", Body=b"x"), names
                )
            )
        mark = s3.mark()
        done = _dispatch(s3, TASK, "Files", "--log-dir", tmp_path / "logs", "--mixin",
                         f"input={data}", f"output=s3://{bucket}/out")  # fmt: skip
        assert done.returncode == 0 and "1000 items in this shard, all done" in done.stderr, (
            done.stderr
        )
        asked = s3.requests(mark)
    finally:
        s3.stop()
    listings = count(asked, "GET", f"/{bucket}?list-type=2")
    assert 21 <= listings <= 22, asked  # the root check, 20 pages of 50 (and an empty last)
    assert count(asked, "PUT") == 0 and len(asked) <= 25, asked


@pytest.mark.parametrize(
    "output, env, says",
    [
        ("s3://no-such-bucket-here/out", {}, "no such bucket 'no-such-bucket-here'"),
        (
            "s3://BUCKET/out",
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            "no credentials",
        ),
        (
            "s3://BUCKET/out",
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            "cannot reach the object store",
        ),
    ],
    ids=["no-bucket", "no-credentials", "endpoint-down"],
)
def test_a_store_that_cannot_serve_is_one_line_and_exit_2_before_any_work(
    s3_server, tmp_path, output, env, says
):
    bucket = s3_server.bucket()
    if env.get("AWS_ENDPOINT_URL"):
        env["AWS_ENDPOINT_URL_S3"] = env["AWS_ENDPOINT_URL"]
    began = time.monotonic()
    done = _dispatch(s3_server, TASK, "Files", "--log-dir", tmp_path / "logs", "--mixin",
                     f"input={_inputs(tmp_path / 'in')}", f"output={output.replace('BUCKET', bucket)}",
                     env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert time.monotonic() - began < 30
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["Files", "Folders"])
def test_kill_9_anywhere_leaves_nothing_partial_and_a_rerun_completes(s3_server, tmp_path, task):
    s3, bucket = s3_server, s3_server.bucket()
    data = _inputs(tmp_path / "in", 12)
    s3.upload_tree(data, bucket, "in")
    expected = tmp_path / "expected"
    made = run_dispatch(TASK, task, "--log-dir", tmp_path / "logs", "--mixin",
                        f"input={data}", f"output={expected}")  # fmt: skip
    assert made.returncode == 0, made.stderr
    want = tree(expected)
    args = [sys.executable, "-m", "dispatcher", str(TASK), task, "--backbone", "mp",
            "--num-process", "2", "--chunksize", "1", "--log-dir", str(tmp_path / "logs"),
            "--mixin", f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    rng = random.Random(2026)
    for _ in range(4):
        env = {**s3.full_env(), "STORE_DELAY": "0.02"}
        proc = subprocess.Popen(args, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.5, 2.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _check_nothing_partial(_store_tree(s3, bucket, "out"), want, task)
    done = _dispatch(s3, *args[3:], timeout=300)
    assert done.returncode == 0, done.stderr
    final = _store_tree(s3, bucket, "out")
    assert final == want  # every leftover (staging prefixes, claims) is gone too


def _check_nothing_partial(found: dict[str, bytes], want: dict[str, bytes], task: str) -> None:
    """Every object at a final key is complete; a folder's manifest stands only with every
    member it names, each complete."""
    for key, body in found.items():
        parts = key.split("/")
        if any(p.startswith(".") for p in parts):
            continue  # a killed attempt's staging or claim: hidden, removed by the next run
        if task == "Files":
            assert body == want[key], key
        elif key.endswith("manifest.txt"):
            folder = key.rsplit("/", 1)[0]
            for member in body.decode().split("\n"):
                assert found.get(f"{folder}/{member}") == want[f"{folder}/{member}"], key


@pytest.mark.slow
def test_two_runs_at_once_over_one_prefix_waste_but_never_mix(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    data = _inputs(tmp_path / "in", 8)
    s3.upload_tree(data, bucket, "in")
    expected = tmp_path / "expected"
    assert run_dispatch(TASK, "Folders", "--log-dir", tmp_path / "logs", "--mixin",
                        f"input={data}", f"output={expected}").returncode == 0  # fmt: skip
    args = [sys.executable, "-m", "dispatcher", str(TASK), "Folders", "--backbone", "mp",
            "--num-process", "2", "--chunksize", "1", "--log-dir", str(tmp_path / "logs"),
            "--mixin", f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    env = {**s3.full_env(), "STORE_DELAY": "0.01"}
    runs = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert _store_tree(s3, bucket, "out") == tree(expected)


def test_per_root_options_come_from_the_storage_section_of_cfg(s3_server, tmp_path):
    if not s3_server.counts_requests:
        pytest.skip("needs the local server's endpoint")
    s3, bucket = s3_server, s3_server.bucket()
    s3.upload_tree(TEXT, bucket, "text")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"storage:\n  s3://{bucket}:\n    endpoint_url: {s3.endpoint}\n")
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}
    args = [WORDCOUNT, "WordCount", "--backbone", "mp", "--log-dir", tmp_path / "logs",
            "--mixin", f"input=s3://{bucket}/text", f"output=s3://{bucket}/counts"]  # fmt: skip
    done = _dispatch(s3, *args, "--cfg", cfg, env=env)
    assert done.returncode == 0, done.stderr
    assert len(_store_tree(s3, bucket, "counts")) == 3
    cfg.write_text(f"storage:\n  s3://{bucket}:\n    endpoint: {s3.endpoint}\n")
    bad = _dispatch(s3, *args, "--cfg", cfg, env=env)
    assert bad.returncode == 2 and "unknown option 'endpoint'" in bad.stderr, bad.stderr


def test_the_readme_bucket_tour_runs(s3_server, tmp_path):
    """The README's `bash server` block, against the session's store: its server start and
    exports are what the fixture did; the bucket is a fresh one."""
    import re

    shutil.copytree(
        REPO / "tasks", tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__")
    )
    (block,) = re.findall(
        r"### Buckets.*?```bash server\n(.*?)```", (REPO / "README.md").read_text(), re.S
    )
    bucket = f"tour-{os.urandom(5).hex()}"  # the tour makes it
    for line in block.splitlines():
        if line.startswith(("python -m moto.server", "export ")):
            continue
        line = line.replace("demo", bucket)
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=s3_server.full_env(),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    assert len(_store_tree(s3_server, bucket, "wordcount")) == 3


@pytest.mark.slow
def test_a_torch_template_reads_and_writes_a_bucket(s3_server, tmp_path):
    """Two devices, each with a loader worker: an input is downloaded in one process and
    removed by the device's writer in another."""
    engine = ["--devices", "cpu,cpu", "--num-workers", "1"]
    pytest.importorskip("torch")
    s3, bucket = s3_server, s3_server.bucket()
    data = tmp_path / "in"
    data.mkdir()
    for i in range(7):
        (data / f"{i}.txt").write_text("x" * (i + 1))
    s3.upload_tree(data, bucket, "in")
    scratch = tmp_path / "scratch"
    done = _dispatch(s3, task_file("templates_torch"), "Length", "--backbone", "torch", *engine,
                     "--batch-size", "2", "--log-dir", tmp_path / "logs", "--mixin",
                     f"input=s3://{bucket}/in", f"output=s3://{bucket}/out",
                     env={"DISPATCH_SCRATCH": str(scratch)}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _store_tree(s3, bucket, "out") == {
        f"{i}.txt.len": str(2 * (i + 1)).encode() for i in range(7)
    }
    assert not [p for p in scratch.rglob("*") if p.is_file()]  # downloads removed by the writer


def test_a_segment_run_lists_only_its_own_output_folders_and_never_the_input(s3_server, tmp_path):
    """Over a manifest, a bucket's input is never listed, and the done check lists the
    folders of the segment's own outputs, not the whole output prefix."""
    from urllib.parse import parse_qs, urlsplit

    s3, bucket = s3_server, s3_server.bucket()
    data = tmp_path / "in"
    for folder in range(6):
        for i in range(3):
            path = data / f"d{folder}" / f"{i:02d}.dat"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([folder, i]) * 50)
    s3.upload_tree(data, bucket, "in")
    local = run_dispatch(TASK, "Files", "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", f"input={data}", f"output={tmp_path / 'out'}")  # fmt: skip
    assert local.returncode == 0, local.stderr
    args = [TASK, "Files", "--backbone", "serial", "--log-dir", tmp_path / "logs",
            "--mixin", f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    manifest = tmp_path / "run.manifest"
    made = _dispatch(s3, "manifest", "--shards", "3", "--output", manifest, "--", *args)
    assert made.returncode == 0, made.stderr

    def listed(mark: int) -> set[str]:
        """The prefixes listed, but for the roots' checks (a LIST of at most one key)."""
        asked = [parse_qs(urlsplit(t).query) for m, t in s3.requests(mark) if m == "GET"]
        asked = [q for q in asked if "list-type" in q and q.get("max-keys") != ["1"]]
        return {q.get("prefix", [""])[0] for q in asked}

    for i in range(3):
        mark = s3.mark()
        done = _dispatch(s3, *args, "--manifest", manifest, "--shard", f"{i}/3")
        assert done.returncode == 0 and "in shard 6" in done.stderr, done.stderr
        if s3.counts_requests:
            assert listed(mark) == {f"out/d{2 * i}/", f"out/d{2 * i + 1}/"}, listed(mark)
    assert _store_tree(s3, bucket, "out") == tree(tmp_path / "out")
    mark = s3.mark()
    again = _dispatch(s3, *args, "--manifest", manifest, "--shard", "2/3")
    assert again.returncode == 0 and "all done" in again.stderr, again.stderr
    if s3.counts_requests:
        assert listed(mark) == {"out/d4/", "out/d5/"}
