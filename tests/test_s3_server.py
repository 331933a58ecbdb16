"""The S3 test server itself (tests/helpers_s3.py): what the object-storage tests rely on, checked
once: buckets and trees round-trip, the access log counts each request, the server honours
conditional writes as S3 does, and how s3fs reports a failed exclusive create and lists a tree."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers_s3 import S3Endpoint, S3Server, count


def counting(s3: S3Endpoint) -> None:
    if not s3.counts_requests:
        pytest.skip("the outside store's requests cannot be counted")


def s3fs_filesystem(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch):
    """A fresh s3fs filesystem configured by `s3.env()` alone, as code under test would be."""
    s3fs = pytest.importorskip("s3fs")
    s3.apply_env(monkeypatch)
    return s3fs.S3FileSystem(skip_instance_cache=True)


def test_bucket_is_created_with_a_unique_valid_name(s3_server: S3Endpoint) -> None:
    first, second = s3_server.bucket(), s3_server.bucket()
    assert first != second
    assert first == first.lower() and 3 <= len(first) <= 63
    names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert {first, second} <= names
    assert s3_server.keys(first) == []


def test_upload_tree_and_tree_round_trip(s3_server: S3Endpoint, tmp_path: Path) -> None:
    files = {"a.txt": b"A", "sub/b c.bin": b"\x00\x01", "sub/deeper/é.txt": "é".encode()}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    bucket = s3_server.bucket()

    written = s3_server.upload_tree(tmp_path, bucket, "in/put")

    assert written == sorted(f"in/put/{name}" for name in files)
    assert s3_server.tree(bucket, "in/put") == files
    assert s3_server.tree(bucket, "in/put/") == files
    assert s3_server.keys(bucket, "in") == sorted(f"put/{name}" for name in files)
    assert s3_server.tree(bucket) == {f"in/put/{name}": data for name, data in files.items()}


def test_a_put_is_counted_once_from_the_access_log(s3_server: S3Endpoint) -> None:
    counting(s3_server)
    bucket = s3_server.bucket()
    mark = s3_server.mark()

    s3_server.client().put_object(Bucket=bucket, Key="one/x y.bin", Body=b"x")

    seen = s3_server.requests(mark)
    assert seen == [("PUT", f"/{bucket}/one/x%20y.bin")]
    assert count(seen, "PUT", f"/{bucket}/one/") == 1
    assert count(seen, "GET") == 0
    # A refused request (412, logged in ANSI colours) and a listing are counted too.
    mark = s3_server.mark()
    with pytest.raises(s3_server.client().exceptions.ClientError):
        s3_server.client().put_object(Bucket=bucket, Key="one/x y.bin", Body=b"", IfNoneMatch="*")
    s3_server.keys(bucket, "one")
    assert s3_server.requests(mark) == [
        ("PUT", f"/{bucket}/one/x%20y.bin"),
        ("GET", f"/{bucket}?list-type=2&prefix=one/&encoding-type=url"),
    ]


def test_requests_in_another_process_reach_the_server_with_env_alone(
    s3_server: S3Endpoint,
) -> None:
    counting(s3_server)
    bucket = s3_server.bucket()
    mark = s3_server.mark()
    script = f"import boto3; boto3.client('s3').put_object(Bucket={bucket!r}, Key='k', Body=b'1')"

    done = subprocess.run(
        [sys.executable, "-c", script], env=s3_server.full_env(), capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert s3_server.requests(mark) == [("PUT", f"/{bucket}/k")]


def test_if_none_match_star_refuses_an_existing_key(s3_server: S3Endpoint) -> None:
    client, bucket = s3_server.client(), s3_server.bucket()
    client.put_object(Bucket=bucket, Key="k", Body=b"new", IfNoneMatch="*")

    with pytest.raises(client.exceptions.ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"again", IfNoneMatch="*")

    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert error["Error"]["Code"] == "PreconditionFailed"
    assert s3_server.tree(bucket) == {"k": b"new"}


def test_if_match_with_a_wrong_etag_is_refused(s3_server: S3Endpoint) -> None:
    client, bucket = s3_server.client(), s3_server.bucket()
    etag = client.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]

    with pytest.raises(client.exceptions.ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch='"0123456789abcdef"')
    client.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_server.tree(bucket) == {"k": b"v3"}


def test_s3fs_create_mode_raises_file_exists_on_an_existing_key(
    s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = s3fs_filesystem(s3_server, monkeypatch)
    bucket = s3_server.bucket()
    fs.pipe_file(f"{bucket}/k", b"first", mode="create")

    # s3fs maps a 412 whose Error.Condition is "If-None-Match" to FileExistsError (an OSError);
    # any other 412 becomes a plain OSError(EINVAL).
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{bucket}/k", b"x", mode="create")

    assert s3_server.tree(bucket) == {"k": b"first"}


def test_multipart_uploads_lists_those_in_progress(s3_server: S3Endpoint) -> None:
    client, bucket = s3_server.client(), s3_server.bucket()
    upload = client.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]

    assert [(u["Key"], u["UploadId"]) for u in s3_server.multipart_uploads(bucket)] == [
        ("big", upload)
    ]
    client.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)
    assert s3_server.multipart_uploads(bucket) == []


def test_an_outside_endpoint_counts_nothing_and_keeps_metadata_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-north-4")
    outside = S3Endpoint.from_environment("https://obs.example.invalid/")

    assert not outside.counts_requests
    assert outside.requests(outside.mark()) is None
    env = outside.env()
    assert env["AWS_ENDPOINT_URL"] == "https://obs.example.invalid"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_DEFAULT_REGION"]) == ("key", "cn-north-4")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RuntimeError, match="AWS_SECRET_ACCESS_KEY"):
        S3Endpoint.from_environment("https://obs.example.invalid")


def test_access_log_parsing_of_werkzeug_lines(tmp_path: Path) -> None:
    """The line shapes werkzeug writes, parsed without a server (see S3Server's docstring)."""
    log = tmp_path / "moto_server.log"
    log.write_text(
        textwrap.dedent(
            """\
            WARNING: This is a development server.
             * Running on http://127.0.0.1:5000
            127.0.0.1 - - [07/Dec/2026 04:21:23] "GET /moto-api/ HTTP/1.1" 200 -
            127.0.0.1 - - [07/Dec/2026 04:21:23] "PUT /b/x%20y/€.txt HTTP/1.1" 200 -
            127.0.0.1 - - [07/Dec/2026 04:21:23] "\x1b[31m\x1b[1mPUT /b/k HTTP/1.1\x1b[0m" 412 -
            127.0.0.1 - - [07/Dec/2026 04:21:23] "\x1b[33mHEAD /b/gone HTTP/1.1\x1b[0m" 404 -
            127.0.0.1 - - [07/Dec/2026 04:21:23] "GET /b?list-type=2&prefix=a/ HTTP/1.1" 200 -
            127.0.0.1 - - [07/Dec/2026 04:21:24] "GET /b/partial"""
        ),
        encoding="utf-8",
    )
    server = S3Server.__new__(S3Server)
    server.log_path = log

    assert server.requests(0) == [
        ("PUT", "/b/x%20y/€.txt"),
        ("PUT", "/b/k"),
        ("HEAD", "/b/gone"),
        ("GET", "/b?list-type=2&prefix=a/"),
    ]
    assert server.mark() == log.read_bytes().rfind(b"\n") + 1
    assert server.requests(server.mark()) == []
