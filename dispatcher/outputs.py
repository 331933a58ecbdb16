"""Outputs that never lie and never escape their root.

Results are written under a staging name beside their final path (hidden, with the same
extension: `a/b.json` is staged as `a/.b.dispatch-part.json`) and renamed into place
only after the item succeeded, so a killed run leaves nothing a finish check would accept.
The staging name is fixed per output, so a rerun of the item finds and removes leftovers.
Existence checks read one directory listing per output directory and reuse it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator, Sequence

STAGING_SUFFIX = ".dispatch-part"
RETIRED_SUFFIX = ".dispatch-old"
"""A replaced folder output waits under this name while its successor moves in."""


class OutputOutsideRoot(ValueError):
    """An item's output would land outside the output root."""


class MissingOutput(FileNotFoundError):
    """A task returned without writing an output it declared."""


def _sibling(final: str, marker: str) -> str:
    # Hidden, beside the final path (so the rename is atomic), and ending with the same
    # extension, so libraries that choose a format by extension write the right one.
    head, tail = os.path.split(final)
    root, ext = os.path.splitext(tail)
    return os.path.join(head, f".{root}{marker}{ext}")


def staging_path(final: str) -> str:
    """The fixed staging name of `final`: `a/b.mp4.json` -> `a/.b.mp4.dispatch-part.json`."""
    return _sibling(final, STAGING_SUFFIX)


def retired_path(final: str) -> str:
    """Where an existing folder output waits while its replacement is moved in."""
    return _sibling(final, RETIRED_SUFFIX)


def is_staging_name(name: str) -> bool:
    """Whether a file name is a staging or retired leftover (never a real output)."""
    if not name.startswith("."):
        return False
    root = os.path.splitext(name)[0]
    markers = (STAGING_SUFFIX, RETIRED_SUFFIX)
    return root.endswith(markers) or name.endswith(markers)


def _parts(relative: str) -> list[str]:
    # "/" always separates; so does the platform's own separator (a backslash on Windows).
    if os.sep != "/":
        relative = relative.replace(os.sep, "/")
    return relative.split("/")


_POSIX = os.sep == "/"


def unsafe_reason(relative: str) -> str | None:
    """Why `relative` cannot name a path inside a root (syntax only), or None if it can."""
    if (
        _POSIX
        and isinstance(relative, str)
        and ".." not in relative
        and "\x00" not in relative
        and relative[:1] not in ("/", "")
        and relative.strip("./")
    ):
        return None  # the common case, decided without splitting
    if not isinstance(relative, str) or not relative:
        return f"invalid output path {relative!r}"
    if "\x00" in relative:
        return f"output path {relative!r} contains a NUL byte"
    if relative.startswith(("/", os.sep)) or os.path.isabs(relative):
        return f"output path {relative!r} is absolute"
    parts = _parts(relative)
    if ".." in parts:
        return f"output path {relative!r} climbs out of the output root"
    if all(p in ("", ".") for p in parts):
        return f"output path {relative!r} names the output root itself"
    return None


def is_inside(root: str, path: str) -> bool:
    """Whether `path` is `root` or below it, by name (resolve links first where they matter)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)
def _real_folder(path: str) -> str:
    # Output folders are resolved once per process: items share a handful of folders.
    return os.path.realpath(path)


@functools.lru_cache(maxsize=4096)
def _make_folder(path: str) -> None:
    os.makedirs(path or ".", exist_ok=True)


def confine(root: str, relative: str) -> str:
    """`root/relative`, refusing anything that would resolve outside `root`.

    Rejects absolute paths, `..`, NUL bytes, and existing symlinks (of folders on the way)
    that lead out of the root.
    """
    reason = unsafe_reason(relative)
    if reason:
        raise OutputOutsideRoot(reason)
    parts = _parts(relative)
    final = os.path.join(root, *[p for p in parts if p not in ("", ".")])
    if not is_inside(_real_folder(root), _real_folder(os.path.dirname(final))):
        raise OutputOutsideRoot(f"output path {relative!r} resolves outside the output root")
    return final


def remove_path(path: str) -> None:
    """Remove a file, link or folder if present (one system call when absent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def clear_staging(final: str) -> None:
    """Remove the staging and retired leftovers of `final` from an earlier, killed attempt."""
    remove_path(staging_path(final))
    remove_path(retired_path(final))


def commit(staging: str, final: str, *, folder: bool) -> None:
    """Move a finished staging file or folder to its final name, replacing an old one."""
    if folder:
        if os.path.lexists(final):
            retired = retired_path(final)
            remove_path(retired)
            os.rename(final, retired)
            os.rename(staging, final)
            remove_path(retired)
        else:
            os.rename(staging, final)
    else:
        os.replace(staging, final)


@contextlib.contextmanager
def staged(final: str, *, folder: bool = False, required: Sequence[str] = ()) -> Iterator[str]:
    """Yield the staging path of `final`; it becomes `final` only if the block succeeds.

    With `folder`, the staging folder is created first and moves into place as a whole;
    `required` names files (relative to the folder) that must exist for it to count.
    Leftovers of an earlier attempt are removed first; on error nothing remains.
    """
    _make_folder(os.path.dirname(final))
    staging = staging_path(final)
    if folder:
        clear_staging(final)
        os.mkdir(staging)
    else:
        remove_path(staging)  # a retired name only ever holds a folder
    try:
        yield staging
        if not os.path.lexists(staging):
            raise MissingOutput(f"nothing was written to {staging} for {final}")
        missing = [r for r in required if not os.path.lexists(os.path.join(staging, r))]
        if missing:
            raise MissingOutput(
                f"the task did not write {', '.join(map(repr, missing))} into {staging}"
            )
        commit(staging, final, folder=folder)
    except BaseException:
        remove_path(staging)
        raise


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
    with staged(os.fspath(path)) as staging:
        yield staging


class ListingIndex:
    """Lists output directories, refusing any reached through a link that leaves `root`.

    A directory that does not exist lists as empty; nothing is created. A directory reached
    through a symlink that leads outside the root also lists as empty, so nothing outside
    the root can make an item count as done. Callers keep the listings they need; only
    the confinement of each directory (and of its parents) is remembered here.
    """

    def __init__(self, root: str) -> None:
        self._root = os.path.normpath(root)
        self._real_root = os.path.realpath(root)
        self._confined: dict[str, bool] = {}

    def _is_confined(self, directory: str) -> bool:
        known = self._confined.get(directory)
        if known is not None:
            return known
        if directory == self._root:
            result = True
        else:
            parent = os.path.dirname(directory)
            if parent != directory and is_inside(self._root, parent):
                # Inside the root by name: confined if its parent is and it is no symlink.
                result = self._is_confined(parent) and not os.path.islink(directory)
            else:
                result = is_inside(self._real_root, os.path.realpath(directory))
        self._confined[directory] = result
        return result

    def names(self, directory: str) -> frozenset[str]:
        """The names in `directory`; empty when it is missing, unreadable or not confined."""
        try:
            listing = frozenset(os.listdir(directory or "."))
        except OSError:
            return frozenset()
        if listing and not self._is_confined(os.path.normpath(directory)):
            return frozenset()
        return listing
