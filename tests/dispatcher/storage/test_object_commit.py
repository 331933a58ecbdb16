"""The commit protocol of object stores, piece by piece, against the real test server:
conditional uploads, the folder claim and its takeover, leftovers of dead attempts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import run_dispatch, task_file

from dispatcher.outputs import objects
from dispatcher.storage import transfer

TASK = task_file("storage_objects")


@pytest.fixture
def store(s3_server, monkeypatch):
    """The session's store, this process pointed at it; a fresh bucket."""
    s3_server.apply_env(monkeypatch)
    from dispatcher.storage import client

    client.configure(None)  # clients made for another test's environment are dropped
    return s3_server, s3_server.bucket()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(url: str, text: str, fail: bool = False, **kw) -> None:
    with objects.StagedObject(url, **kw) as local, open(local, "w") as fh:
        fh.write(text)
        if fail:
            raise RuntimeError("the task failed")


def test_a_conditional_upload_keeps_what_another_run_committed(store, tmp_path):
    s3, bucket = store
    url = f"s3://{bucket}/out/a.json"
    s3.client().put_object(Bucket=bucket, Key="out/a.json", Body=b"theirs")
    with pytest.raises(objects.ObjectExists):
        _write(url, "mine", create=True)
    assert s3.tree(bucket, "out") == {"a.json": b"theirs"}
    _write(url, "mine")  # without `create`: replaced, whole
    assert s3.tree(bucket, "out") == {"a.json": b"mine"}


def test_a_failed_block_uploads_nothing(store):
    s3, bucket = store
    with pytest.raises(RuntimeError):
        _write(f"s3://{bucket}/out/a.json", "half", fail=True)
    assert s3.keys(bucket) == []


def _folder(url: str, members: dict[str, bytes], **kw) -> None:
    with objects.StagedObjectFolder(url, **kw) as local:
        for rel, body in members.items():
            os.makedirs(os.path.dirname(os.path.join(local, rel)) or local, exist_ok=True)
            with open(os.path.join(local, rel), "wb") as fh:
                fh.write(body)


def test_a_folder_replaces_the_earlier_one_whole_and_leaves_no_staging(store):
    s3, bucket = store
    url = f"s3://{bucket}/out/v.mp4"
    _folder(url, {"a.bin": b"1", "old.bin": b"1", "m.txt": b"1"}, done_members=["m.txt"])
    _folder(url, {"a.bin": b"2", "m.txt": b"2"}, done_members=["m.txt"], remake=True)
    assert s3.tree(bucket, "out") == {"v.mp4/a.bin": b"2", "v.mp4/m.txt": b"2"}
    with pytest.raises(objects.ObjectExists):  # complete already, and not asked to remake
        _folder(url, {"a.bin": b"3", "m.txt": b"3"}, done_members=["m.txt"])
    assert s3.tree(bucket, "out") == {"v.mp4/a.bin": b"2", "v.mp4/m.txt": b"2"}


def test_a_claim_of_a_dead_process_is_taken_over_and_a_live_one_is_waited_for(store):
    s3, bucket = store
    url = f"s3://{bucket}/out/v.mp4"
    claim = objects.claim_url(url)
    dead = json.dumps({"token": f"{_dead_pid()}-ab0_{objects.HOST_TAG}"}).encode()
    transfer.put_bytes(claim, dead)
    _folder(url, {"m.txt": b"1"}, done_members=["m.txt"])
    assert s3.tree(bucket, "out") == {"v.mp4/m.txt": b"1"}  # and the claim let go
    live = json.dumps({"token": f"{os.getpid()}-ab0_{objects.HOST_TAG}"}).encode()
    transfer.put_bytes(claim, live)
    threading.Timer(1.0, transfer.delete, [claim]).start()
    began = time.monotonic()
    _folder(url, {"m.txt": b"2"}, done_members=["m.txt"], remake=True)
    assert time.monotonic() - began >= 1.0
    assert s3.tree(bucket, "out") == {"v.mp4/m.txt": b"2"}


def _input(tmp_path, n=4):
    data = tmp_path / "in"
    data.mkdir()
    for i in range(n):
        (data / f"{i:02d}.dat").write_bytes(bytes([i]) * 10)
    return data


def test_a_rerun_removes_dead_attempts_leftovers_and_keeps_live_ones(store, tmp_path):
    s3, bucket = store
    data = _input(tmp_path)
    args = [TASK, "Folders", "--log-dir", tmp_path / "logs", "--mixin", f"input={data}",
            f"output=s3://{bucket}/out"]  # fmt: skip
    env = s3.full_env()
    assert run_dispatch(*args, env=env).returncode == 0
    done = s3.tree(bucket, "out")
    client, tag = s3.client(), objects.HOST_TAG
    dead, live = f"{_dead_pid()}-ab0_{tag}", f"{os.getpid()}-ab0_{tag}"
    planted = {
        f"out/.00.dispatch-part-{dead}.dat/part-0.bin": b"dead",
        f"out/.01.dispatch-part-{live}.dat/part-0.bin": b"live",
        "out/.02.dat.dispatch-lock": json.dumps({"token": dead}).encode(),
    }
    for key, body in planted.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    again = run_dispatch(*args, env=env)
    assert again.returncode == 0 and "all done" in again.stderr, again.stderr
    left = s3.tree(bucket, "out")
    assert {k: v for k, v in left.items() if k.startswith(".0")} == {
        f".01.dispatch-part-{live}.dat/part-0.bin": b"live"
    }
    assert {k: v for k, v in left.items() if not k.startswith(".0")} == done


def test_shards_over_a_bucket_are_disjoint_and_cover_it(store, tmp_path):
    s3, bucket = store
    s3.upload_tree(_input(tmp_path, 9), bucket, "in")
    env = s3.full_env()
    for shard in ("0/2", "1/2"):
        done = run_dispatch(TASK, "Files", "--shard", shard, "--log-dir", tmp_path / "logs",
                            "--mixin", f"input=s3://{bucket}/in", f"output=s3://{bucket}/{shard[0]}",
                            env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
    first, second = set(s3.keys(bucket, "0")), set(s3.keys(bucket, "1"))
    first.discard(".dispatch-run.Files")
    second.discard(".dispatch-run.Files")
    assert not first & second
    assert first | second == {f"{i:02d}.dat.bin" for i in range(9)}


def test_an_output_prefix_inside_the_input_prefix_is_refused(store, tmp_path):
    s3, bucket = store
    done = run_dispatch(TASK, "Files", "--log-dir", tmp_path / "logs", "--mixin",
                        f"input=s3://{bucket}/data", f"output=s3://{bucket}/data/out",
                        env=s3.full_env())  # fmt: skip
    assert done.returncode == 2 and "inside the input root" in done.stderr, done.stderr


def test_a_killed_multipart_upload_is_aborted_once_stale(store, monkeypatch):
    s3, bucket = store
    client = s3.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="out/big.bin")["UploadId"]
    client.upload_part(Bucket=bucket, Key="out/big.bin", UploadId=upload, PartNumber=1, Body=b"x")
    root = f"s3://{bucket}/out"
    # (moto reports every upload as started in 2010: the threshold is what is tested here)
    monkeypatch.setattr(objects, "STAGING_STALE_SECONDS", 1e12)
    assert objects.abandoned_uploads(root) == []  # a live upload may be this fresh
    monkeypatch.setattr(objects, "STAGING_STALE_SECONDS", -1.0)
    (leftover,) = objects.abandoned_uploads(root)
    assert objects.remove_object_leftovers(root, [leftover]) == 1
    assert s3.multipart_uploads(bucket) == [] and s3.keys(bucket) == []
    assert objects.remove_object_leftovers(root, [leftover]) == 1  # gone already: no error
