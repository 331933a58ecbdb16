"""Listing a prefix: every object below it in pages of up to 1,000 keys per request,
never a request per object (done checks, enumeration and leftovers all read these)."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.storage import client, urls


@dataclass(frozen=True, slots=True)
class Listed:
    """One listed object: what a LIST tells without reading it."""

    size: int
    modified: float
    """Seconds since the epoch, by the store's clock."""


def list_prefix(url: str) -> dict[str, Listed]:
    """Every object below `url` (a folder-like prefix), keyed by its POSIX path relative to
    it. A missing prefix lists as empty; a missing bucket is an error."""
    bucket, key = urls.split(url)
    prefix = f"{key}/" if key else ""
    found: dict[str, Listed] = {}
    kwargs = {"Bucket": bucket, "Prefix": prefix}  # the store's page: 1,000 keys on S3
    while True:
        page = client.call(url, "list_objects_v2", **kwargs)
        for entry in page.get("Contents", ()):
            relative = entry["Key"][len(prefix) :]
            if relative and not relative.endswith("/"):  # "folder" placeholders are no objects
                found[relative] = Listed(int(entry["Size"]), entry["LastModified"].timestamp())
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return found
        kwargs["ContinuationToken"] = token


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
