"""Object-store URLs (`s3://bucket/prefix`, `obs://bucket/prefix`) and `file://` paths:
telling them from local paths, and joining and splitting them without any I/O.

OBS is S3-compatible: both schemes are served by one client (`storage.client`); the
scheme is kept only for what the user reads back (keys, records, messages).
"""

from __future__ import annotations

import os
from typing import Any

SCHEMES = ("s3://", "obs://")
FILE_SCHEME = "file://"


def is_url(path: Any) -> bool:
    """Whether `path` names an object in a store (not a local or `file://` path)."""
    return isinstance(path, str) and path.startswith(SCHEMES)


def local(path: str) -> str:
    """A `file://` URL as the local path it names; any other path unchanged."""
    if isinstance(path, str) and path.startswith(FILE_SCHEME):
        rest = path[len(FILE_SCHEME) :]
        # file:///abs/path (empty host) or file://localhost/abs/path; file://rel is relative.
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        return rest or "/"
    return path


def canonical(root: str) -> str:
    """One spelling per root: a URL without doubled or trailing slashes, a local path
    resolved (links and all), so two spellings of one place compare equal."""
    if is_url(root):
        scheme, rest = root.split("://", 1)
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{scheme}://{'/'.join(parts)}"
    return os.path.realpath(local(root))


def split(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    rest = canonical(url).split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def bucket_path(url: str) -> str:
    """The `bucket/key` form fsspec's S3 filesystem takes."""
    bucket, key = split(url)
    return f"{bucket}/{key}" if key else bucket


def join(root: str, relative: str) -> str:
    """`root/relative`, a URL or a local path alike (`relative` is a POSIX path)."""
    if not is_url(root) and not root.startswith(FILE_SCHEME):
        return os.path.join(root, relative) if relative else root
    return f"{root.rstrip('/')}/{relative}" if relative else root.rstrip("/")


def parent(url: str) -> str:
    """The URL of the folder (prefix) `url` is in."""
    return url.rstrip("/").rpartition("/")[0]


def name(url: str) -> str:
    """The last segment of a URL."""
    return url.rstrip("/").rpartition("/")[2]


def relative_to(root: str, url: str) -> str | None:
    """`url` relative to `root` (a POSIX key), or None when it is not below it."""
    root, url = canonical(root), canonical(url)
    if url == root:
        return ""
    prefix = root + "/"
    return url[len(prefix) :] if url.startswith(prefix) else None


def is_inside(root: str, url: str) -> bool:
    """Whether `url` is `root` or below it (both URLs)."""
    return relative_to(root, url) is not None
