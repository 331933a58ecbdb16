"""Moving bytes to and from a store: whole uploads (never a partial object at a key),
small reads and writes, conditional creates, server-side copies and batched deletes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dispatcher.storage import client, urls
from dispatcher.storage.listing import list_prefix

_BATCH = 1000  # keys per DeleteObjects request


class ObjectExists(FileExistsError):
    """Something was committed at the key since the plan looked (a conditional PUT failed)."""


def put_file(local: str, url: str, *, create: bool) -> None:
    """Upload a local file whole to `url` (one PUT, or a multipart upload aborted on
    failure: the store shows the object only once complete); with `create`, only if
    nothing is there (`If-None-Match: *`)."""
    fs = client.filesystem(url)
    try:
        fs.put_file(local, urls.bucket_path(url), mode="create" if create else "overwrite")
    except FileExistsError:
        raise ObjectExists(f"{url} was committed by another run") from None


def put_bytes(url: str, data: bytes, **condition: Any) -> Any:
    """Write a small object whole (records, markers, claims); `condition`: `IfNoneMatch`
    or `IfMatch`, which fail with FileExistsError / OSError."""
    bucket, key = urls.split(url)
    return client.call(url, "put_object", Bucket=bucket, Key=key, Body=data, **condition)


def get_object(url: str) -> tuple[bytes, str, float]:
    """A small object's bytes, ETag and modification time (the store's clock)."""
    bucket, key = urls.split(url)
    head = client.call(url, "head_object", Bucket=bucket, Key=key)
    # The body may be newer than the head: callers act only on the ETag (`IfMatch`).
    return read_bytes(url), head["ETag"], head["LastModified"].timestamp()


def read_bytes(url: str) -> bytes:
    """A small object's bytes (records, markers)."""
    return client.filesystem(url).cat_file(urls.bucket_path(url))


def copy_key(url: str, source_key: str, key: str) -> None:
    """A server-side copy within `url`'s bucket (no bytes through this machine)."""
    bucket = urls.split(url)[0]
    client.call(url, "copy_object", Bucket=bucket, Key=key,
                CopySource={"Bucket": bucket, "Key": source_key})  # fmt: skip


def delete_keys(url: str, keys: Sequence[str]) -> None:
    """Delete objects of `url`'s bucket by key, up to 1,000 per request."""
    bucket = urls.split(url)[0]
    for start in range(0, len(keys), _BATCH):
        objects = [{"Key": key} for key in keys[start : start + _BATCH]]
        client.call(
            url, "delete_objects", Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
        )


def delete_prefix(url: str) -> None:
    """Delete every object below `url`."""
    key = urls.split(url)[1]
    delete_keys(url, [f"{key}/{rel}" for rel in list_prefix(url)])


def delete(url: str) -> None:
    """Delete one object (absent is fine)."""
    bucket, key = urls.split(url)
    client.call(url, "delete_object", Bucket=bucket, Key=key)
