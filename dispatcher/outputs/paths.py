"""Where outputs may go: confinement to the output root, the user's roots kept apart,
roots that cannot be written, and folders made once per process."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from dispatcher.storage import urls


class OutputOutsideRoot(ValueError):
    """An item's output would land outside the output root."""


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


def root_overlaps(input_roots: Sequence[str], output_roots: Sequence[str]) -> list[str]:
    """Why an output root would put the user's inputs at risk, one line each.

    An output root that is an input root, or holds one, would have commits replace inputs
    (a video by its folder of clips). One inside an input root would have its outputs read
    as inputs by every later run over that root (a second task, another output root).
    Links are resolved, so other spellings of the same folder count too.
    """
    problems = []
    for out in output_roots:
        real_out = urls.canonical(out)
        for inp in input_roots:
            real_in = urls.canonical(inp)
            if urls.is_url(real_in) != urls.is_url(real_out):
                continue  # a store and a local folder never overlap
            if real_out == real_in:
                problems.append(
                    f"mixin 'output': output root {out} is the input root "
                    "(outputs would replace inputs): choose another folder"
                )
            elif is_inside(real_out, real_in):
                problems.append(
                    f"mixin 'output': the input root {inp} is inside the output root "
                    f"{out} (outputs could replace inputs): choose another folder"
                )
            elif is_inside(real_in, real_out):
                problems.append(
                    f"mixin 'output': output root {out} is inside the input root {inp} "
                    "(a later run would read its outputs as inputs): choose a folder outside it"
                )
    return problems


def hidden_beside(root: str, suffix: str) -> str:
    """A hidden file beside `root`, named after it (`OUT/../.OUT<suffix>`): where the
    dispatcher keeps a record of a root whose contents are wholly the task's own."""
    parent, name = os.path.split(os.path.abspath(root))
    return os.path.join(parent, f".{name}{suffix}")


def unwritable_reason(root: str) -> str | None:
    """Why no output could be committed under `root`, or None: the folder itself or, while
    it does not exist yet, the nearest folder above it that `makedirs` would start from.

    Asked before any work, so a read-only mount or a folder the user may not write is one
    line and exit 2 instead of every item failing the same way.
    """
    path = os.path.abspath(root)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f"{path} is not a folder"
    if os.access(path, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return f"{'read-only file system' if read_only else 'permission denied'} at {path}"


@functools.lru_cache(maxsize=4096)
def _folder_inside(root: str, folder: str) -> bool:
    # Output folders are resolved once per run (`forget_folders`): items share a handful.
    return is_inside(os.path.realpath(root), os.path.realpath(folder))


@functools.lru_cache(maxsize=4096)
def make_folder(path: str) -> None:
    """`makedirs` once per folder and run: items share a handful of folders."""
    os.makedirs(path or ".", exist_ok=True)


def forget_folders() -> None:
    """Forget which folders were made and where they resolve, when a run starts: one
    process may run again (from Python) after a folder was removed or swapped for a link."""
    make_folder.cache_clear()
    _folder_inside.cache_clear()


def confine(root: str, relative: str) -> str:
    """`root/relative`, refusing anything that would resolve outside `root`.

    Rejects absolute paths, `..`, NUL bytes, and existing symlinks (of folders on the way)
    that lead out of the root.
    """
    reason = unsafe_reason(relative)
    if reason:
        raise OutputOutsideRoot(reason)
    if _POSIX and root and not _needs_normalising(relative):
        # Already a plain relative path (the common case): joined without splitting it.
        final = f"{root}{relative}" if root[-1] == "/" else f"{root}/{relative}"
    else:
        parts = _parts(relative)
        final = os.path.join(root, *[p for p in parts if p not in ("", ".")])
    if not _folder_inside(root, os.path.dirname(final)):
        raise OutputOutsideRoot(f"output path {relative!r} resolves outside the output root")
    return final


def _needs_normalising(relative: str) -> bool:
    # Empty or "." segments ("a//b", "./a", "a/.", "a/"), which confine drops.
    return (
        "//" in relative
        or "/./" in relative
        or relative[:2] == "./"
        or relative[-2:] == "/."
        or relative[-1:] == "/"
        or relative == "."
    )
