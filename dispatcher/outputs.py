"""Outputs that never lie and never escape their root.

Results are written under a staging name beside their final path and renamed into place
only after the item succeeded, so a killed run leaves nothing a finish check would accept.
The staging name is fixed per output, so a rerun of the item finds and removes leftovers.
Existence checks read one directory listing per output directory and reuse it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

STAGING_SUFFIX = ".dispatch-part"


class OutputOutsideRoot(ValueError):
    """An item's output would land outside the output root."""


def staging_path(final: str) -> str:
    """The fixed staging name of `final`: a hidden sibling, so renaming it is atomic."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}{STAGING_SUFFIX}")


def is_staging_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(STAGING_SUFFIX)


def confine(root: str, relative: str) -> str:
    """`root/relative`, refusing anything that would resolve outside `root`.

    Rejects absolute paths, `..`, NUL bytes, and existing symlinks (of folders on the way)
    that lead out of the root.
    """
    if not relative or "\x00" in relative:
        raise OutputOutsideRoot(f"invalid output path {relative!r}")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise OutputOutsideRoot(f"output path {relative!r} is absolute")
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        raise OutputOutsideRoot(f"output path {relative!r} climbs out of the output root")
    final = os.path.join(root, *[p for p in parts if p not in ("", ".")])
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(os.path.dirname(final))
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        raise OutputOutsideRoot(f"output path {relative!r} resolves outside the output root")
    return final


def remove_path(path: str) -> None:
    """Remove a file, link or folder if present."""
    if os.path.islink(path) or os.path.isfile(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def commit(staging: str, final: str) -> None:
    """Move a finished staging file or folder to its final name, replacing an old one."""
    if os.path.isdir(staging) and not os.path.islink(staging):
        if os.path.lexists(final):
            retired = staging + ".old"
            remove_path(retired)
            os.rename(final, retired)
            os.rename(staging, final)
            remove_path(retired)
        else:
            os.rename(staging, final)
    else:
        os.replace(staging, final)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a staging path to write; it becomes `path` only if the block succeeds.

    ```python
    with atomic_write(out) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)
    ```
    A leftover from an earlier killed attempt is removed first; on error nothing remains.
    """
    final = os.fspath(path)
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    staging = staging_path(final)
    remove_path(staging)
    try:
        yield staging
        if not os.path.lexists(staging):
            raise FileNotFoundError(f"nothing was written to {staging} for {final}")
        commit(staging, final)
    except BaseException:
        remove_path(staging)
        raise


class ListingIndex:
    """Answers "does this path exist?" from one cached listing per directory.

    A directory that does not exist lists as empty; nothing is created.
    """

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}

    def names(self, directory: str) -> frozenset[str]:
        listing = self._listings.get(directory)
        if listing is None:
            try:
                with os.scandir(directory or ".") as entries:
                    listing = frozenset(e.name for e in entries)
            except (FileNotFoundError, NotADirectoryError):
                listing = frozenset()
            self._listings[directory] = listing
        return listing

    def exists(self, path: str) -> bool:
        head, tail = os.path.split(path)
        return tail in self.names(head)
