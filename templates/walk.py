"""Walking an input tree fast and in an order that never depends on the filesystem.

One `os.scandir` per folder, names tested with plain string operations, no `stat` for
regular entries. `walk_suffixes` (files by extension, the common case) returns keys in
exact sorted order, grouped by folder, so the plan need not sort and the done check can
answer folder by folder; `walk` returns keys nearly sorted, and the plan sorts them.
The order is a property of the keys alone, never of the filesystem's listing order.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterable, Iterator

from dispatcher.errors import UsageError
from dispatcher.outputs import is_staging_name
from dispatcher.outputs.names import COMPLETE_NAME
from dispatcher.outputs.records import is_provenance_name


def _bookkeeping(name: str) -> bool:
    """The dispatcher's own hidden names (leftovers, provenance records): never an item,
    even where hidden names are."""
    return is_staging_name(name) or is_provenance_name(name) or name == COMPLETE_NAME


NameTest = Callable[[str], bool]


def walk(
    root: str,
    *,
    accept_path: NameTest | None = None,
    min_depth: int = 1,
    max_depth: int | None = None,
    kind: str = "file",
    hidden: bool = False,
    follow_links: bool = False,
) -> list[str]:
    """Keys (POSIX paths relative to `root`) of the entries found under `root`.

    `accept_path(key)` tests an entry's relative path. Entries between `min_depth` and
    `max_depth` levels down (1: directly in `root`) whose type is `kind` (file, dir or any)
    are items; nothing below `max_depth` is listed. Hidden names (leading dot) are skipped
    unless `hidden`; staging leftovers always are.
    """
    keys: list[str] = []
    want_files = kind in ("file", "any")
    want_dirs = kind in ("dir", "any")
    for prefix, level, entries in _folders(root, max_depth, hidden, follow_links):
        if level < min_depth:
            continue
        found = []
        for entry in entries:
            key = prefix + entry.name
            if accept_path is not None and not accept_path(key):
                continue
            try:
                if entry.is_dir(follow_symlinks=follow_links):
                    if want_dirs:
                        found.append(key)
                elif want_files and entry.is_file():
                    found.append(key)
            except OSError:
                continue
        found.sort()
        keys += found
    return keys


def _scan(root: str, prefix: str) -> list[os.DirEntry[str]] | None:
    path = os.path.join(root, prefix) if prefix else root
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        if prefix:
            return None  # removed while walking
        raise UsageError(f"input folder {root} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot list input folder {path}: {exc.strerror or exc}") from None


def _folders(
    root: str, max_depth: int | None, hidden: bool, follow_links: bool
) -> Iterator[tuple[str, int, list[os.DirEntry[str]]]]:
    """(relative prefix, level, visible entries) of every folder down to `max_depth`."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, int]] = [("", 1)]
    while stack:
        prefix, level = stack.pop()
        if follow_links and not _first_visit(os.path.join(root, prefix), seen):
            continue
        entries = _scan(root, prefix)
        if entries is None:
            continue
        visible = [e for e in entries if e.name[0] != "." or (hidden and not _bookkeeping(e.name))]
        yield prefix, level, visible
        if max_depth is not None and level >= max_depth:
            continue
        subdirs = []
        for entry in visible:
            try:
                if entry.is_dir(follow_symlinks=follow_links):
                    subdirs.append(entry.name)
            except OSError:
                continue
        subdirs.sort(reverse=True)
        for name in subdirs:
            stack.append((prefix + name + "/", level + 1))


def _first_visit(path: str, seen: set[tuple[int, int]]) -> bool:
    """False for a folder already walked (a symlink loop, or one reached twice)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) in seen:
        return False
    seen.add((st.st_dev, st.st_ino))
    return True


Group = tuple[str, list[str]]
"""(folder prefix ending in "/" or "", sorted file names): keys are prefix + name."""


def _as_folder(name: str) -> str:
    return name + "/"


def walk_suffixes(
    root: str,
    suffixes: tuple[str, ...],
    *,
    hidden: bool = False,
    follow_links: bool = False,
) -> list[Group]:
    """Files under `root` whose lower-cased name ends with one of `suffixes`, as groups.

    The hot loop of most datasets, kept tight. Groups come in exact key order: a folder's
    files and sub-folders are interleaved as the full relative paths sort ("a.txt" before
    "a/x", "a/x" before "a0"), so the concatenated keys need no sorting.
    """
    groups: list[Group] = []
    seen: set[tuple[int, int]] = set()
    # A stack of pending work: a folder prefix to scan (str) or a finished group (tuple).
    stack: list[str | Group] = [""]
    pop, push = stack.pop, stack.append
    while stack:
        work = pop()
        if isinstance(work, tuple):
            groups.append(work)
            continue
        prefix = work
        if follow_links and not _first_visit(os.path.join(root, prefix), seen):
            continue
        entries = _scan(root, prefix)
        if entries is None:
            continue
        found, subdirs = _matching(entries, suffixes, hidden, follow_links)
        if not subdirs:
            if found:
                push((prefix, found))
            continue
        stack += _interleaved(prefix, found, subdirs)
    return groups


def _matching(
    entries: list[os.DirEntry[str]], suffixes: tuple[str, ...], hidden: bool, follow_links: bool
) -> tuple[list[str], list[str]]:
    """(sorted names of a folder's files with one of `suffixes`, names of its sub-folders)."""
    found: list[str] = []
    add = found.append
    subdirs: list[str] = []
    for entry in entries:
        name = entry.name
        if name[0] == "." and (not hidden or _bookkeeping(name)):
            continue
        try:
            if (name.endswith(suffixes) or name.lower().endswith(suffixes)) and entry.is_file():
                add(name)
            elif entry.is_dir(follow_symlinks=follow_links):
                subdirs.append(name)
        except OSError:
            continue
    found.sort()
    return found, subdirs


def _interleaved(prefix: str, found: list[str], subdirs: list[str]) -> list[str | Group]:
    """A folder's work for the stack, last first: its files in groups between its
    sub-folders, each sub-folder `d` sorting as "d/" among the file names."""
    subdirs.sort(key=_as_folder)
    pending: list[str | Group] = []
    cut = 0
    for name in subdirs:
        at = bisect.bisect_left(found, name + "/", cut)
        if at > cut:
            pending.append((prefix, found[cut:at]))
        pending.append(prefix + name + "/")
        cut = at
    if cut < len(found):
        pending.append((prefix, found[cut:]))
    pending.reverse()
    return pending


def _segment_regex(segment: str) -> str:
    """Translate one path segment of a glob (no `/`) to a regular expression."""
    out, i, n = [], 0, len(segment)
    while i < n:
        c = segment[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i
            if j < n and segment[j] in "!^":
                j += 1
            if j < n and segment[j] == "]":
                j += 1
            while j < n and segment[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape("["))
            else:
                body = segment[i:j].replace("\\", "\\\\")
                i = j + 1
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append(f"(?!/)[{body}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def glob_regex(pattern: str) -> str:
    """A regular expression matching the relative POSIX paths that `pattern` names.

    `*`, `?` and `[...]` stay inside one folder level; a `**` segment matches any number
    of levels, including none (`**/*.jpg` matches `a.jpg` and `x/y/a.jpg`).
    """
    segments = [s for s in pattern.strip("/").split("/") if s not in ("", ".")]
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    return "".join(parts) + r"\Z"


def glob_depth(patterns: Iterable[str]) -> int | None:
    """How many levels the patterns can reach, or None when a `**` makes it unbounded."""
    deepest = 0
    for pattern in patterns:
        segments = [s for s in pattern.strip("/").split("/") if s not in ("", ".")]
        if "**" in segments:
            return None
        deepest = max(deepest, len(segments))
    return deepest


def listed(
    keys: Iterable[str],
    *,
    accept_path: NameTest | None = None,
    min_depth: int = 1,
    max_depth: int | None = None,
    kind: str = "file",
    hidden: bool = False,
) -> list[str]:
    """`walk` over a store's listing (object keys relative to the root) instead of a
    folder: the same items, sorted. Folders are the prefixes that hold objects; hidden
    names are skipped unless `hidden`, the dispatcher's own always."""
    found: set[str] = set()
    for key in keys:
        parts = key.split("/")
        if any(_bookkeeping(p) or (not hidden and p[:1] == ".") for p in parts):
            continue
        top = len(parts) if max_depth is None else min(len(parts), max_depth)
        for depth in range(min_depth, top + 1):
            is_file = depth == len(parts)
            if (kind == "file" and not is_file) or (kind == "dir" and is_file):
                continue
            path = "/".join(parts[:depth])
            if accept_path is None or accept_path(path):
                found.add(path)
    return sorted(found)
