"""Listing a prefix: every object below it in pages of up to 1,000 keys per request,
never a request per object (done checks, enumeration and leftovers all read these)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dispatcher.storage import client, urls


@dataclass(frozen=True, slots=True)
class Listed:
    """One listed object: what a LIST tells without reading it."""

    size: int
    modified: float
    """Seconds since the epoch, by the store's clock."""


def pages(url: str, delimiter: str = "", limit: int = 0) -> Iterator[dict[str, Any]]:
    """The pages of a LIST of what lies below `url`, one request each (the store's page:
    1,000 keys on S3, or `limit`); with `delimiter="/"`, only what lies directly under it
    (sub-prefixes as `CommonPrefixes`)."""
    bucket, key = urls.split(url)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{key}/" if key else ""}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    if limit:
        kwargs["MaxKeys"] = limit
    while True:
        page = client.call(url, "list_objects_v2", **kwargs)
        yield page
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        kwargs["ContinuationToken"] = token


def list_prefix(url: str) -> dict[str, Listed]:
    """Every object below `url` (a folder-like prefix), keyed by its POSIX path relative to
    it. A missing prefix lists as empty; a missing bucket is an error."""
    key = urls.split(url)[1]
    start = len(key) + 1 if key else 0
    found: dict[str, Listed] = {}
    for page in pages(url):
        for entry in page.get("Contents", ()):
            relative = entry["Key"][start:]
            if relative and not relative.endswith("/"):  # "folder" placeholders are no objects
                found[relative] = Listed(int(entry["Size"]), entry["LastModified"].timestamp())
    return found


def folders_of(keys: dict[str, Listed]) -> dict[str, frozenset[str]]:
    """Relative folder -> the names listed directly in it (objects and sub-folders), the
    shape local done checks read (`TemplateItems` asks for one folder at a time)."""
    names: dict[str, set[str]] = {}
    for relative in keys:
        parts = relative.split("/")
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            names.setdefault(folder, set()).add(parts[depth])
    return {folder: frozenset(found) for folder, found in names.items()}
