"""Where inputs and outputs live: local folders, `file://` paths, or prefixes of an
object store (`s3://bucket/prefix`, `obs://bucket/prefix`, S3-compatible) through fsspec.

One module each: `urls` (telling and joining URLs, no I/O), `client` (the store's client,
credentials, per-root options, errors in one line), `listing` (paginated LISTs),
`commit` (uploads that never leave a partial object, the folder protocol and its claim),
`scratch` (local staging and downloads). This module is what a task uses, local or not:

```python
for rel in list_files(self.mixin.input, suffix=".txt"): ...      # one LIST per 1,000 keys
exists(out, root=self.mixin.output)                               # from one listing, cached
with local_copy(url) as path: open(path)...                       # a local file to read
with atomic_write(out) as tmp: ...                                # uploaded whole on success
```
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from dispatcher.storage.urls import canonical, is_url, join, local

_listings: dict[str, frozenset[str]] = {}
"""Prefix URL -> the keys below it, relative: what `exists` answers from, per run."""


def forget(roots: Sequence[str] = ()) -> None:
    """When a run starts: forget what earlier listings saw, and where `roots` are in a
    store, make the run's own scratch folder now, so that every process the run starts
    shares it (and it goes when the run's process exits)."""
    from dispatcher.storage import scratch

    _listings.clear()
    scratch.start_run()
    if any(map(is_url, roots)):
        scratch.folder()


def list_files(root: str, suffix: str | tuple[str, ...] = "") -> list[str]:
    """The files below `root` (a folder or a prefix), as sorted POSIX paths relative to
    it, those ending with `suffix` only (case-insensitive) and none of the dispatcher's
    own hidden names (leftovers, records)."""
    suffixes = tuple(s.lower() for s in ((suffix,) if isinstance(suffix, str) else suffix))
    if is_url(root):
        from dispatcher.storage.listing import list_prefix

        keys: Iterator[str] = iter(list_prefix(root))
    else:
        keys = local_files(local(root))
    return sorted(
        key
        for key in keys
        if key.lower().endswith(suffixes) and not any(_bookkeeping(part) for part in key.split("/"))
    )


def _bookkeeping(name: str) -> bool:
    # The dispatcher's own hidden names (staging, claims, records) are never data.
    return name[:1] == "." and ".dispatch-" in name


def local_copy(path: str) -> contextlib.AbstractContextManager[str]:
    """A local path to read `path` from: itself when local, a scratch copy of an object
    (removed after the block) for a URL."""
    from dispatcher.storage.scratch import local_copy as copy

    return copy(path)


def local_files(root: str) -> Iterator[str]:
    """The files below a local folder, as POSIX paths relative to it (unsorted)."""
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for name in files:
            yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")


def exists(path: str, root: str | None = None) -> bool:
    """Whether `path` exists. For a URL, answered from one listing of `root` (or of the
    path's own folder) per run: a done check over 20,000 objects costs 20 requests, not
    20,000. Give the output root as `root` when outputs lie in many folders."""
    if not is_url(path):
        return os.path.exists(local(path))
    from dispatcher.storage.listing import list_prefix

    prefix = canonical(root) if root is not None else canonical(path).rpartition("/")[0]
    listed = _listings.get(prefix)
    if listed is None:
        listed = _listings[prefix] = frozenset(list_prefix(prefix))
    rel = canonical(path)[len(prefix) + 1 :]
    return rel in listed


def root_problems(roots: list[str]) -> list[str]:
    """Why each store root cannot be used (no bucket, no credentials, endpoint down), one
    line each, from one small LIST per root: asked before any work."""
    from dispatcher.storage.client import root_problem

    problems = []
    for root in dict.fromkeys(canonical(r) for r in roots if is_url(r)):
        problem = root_problem(root)
        if problem is not None:
            problems.append(problem)
    return problems


__all__ = [
    "canonical",
    "exists",
    "forget",
    "is_url",
    "join",
    "list_files",
    "local",
    "local_copy",
    "local_files",
    "root_problems",
]
