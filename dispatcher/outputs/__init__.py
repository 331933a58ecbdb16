"""Outputs that never lie and never escape their root.

Results are written under a staging name beside their final path (hidden, with the same
extension: `a/b.json` is staged as `a/.b.dispatch-part-<token>.json`) and renamed into
place only after the item succeeded, so a killed run leaves nothing a finish check would
accept. The token (process id, random hex drawn once per process, and a count of its
attempts) is new for every attempt: two runs writing the same item at once each commit
only their own complete bytes, and one run's clean-up never deletes the file another run
is writing. Leftovers of killed attempts are found by
name (`is_staging_name`) and removed under the item's claim (`dispatcher.outputs.claims`).
Existence checks read one directory listing per output directory and reuse it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence

from dispatcher.outputs.claims import LOCK_SUFFIX, Claim, held_for_batch, hold_all

STAGING_SUFFIX = ".dispatch-part"
RETIRED_SUFFIX = ".dispatch-old"
"""A replaced folder output waits under this name while its successor moves in (under the
item's claim, so one fixed name per output suffices)."""
_MARKERS = (STAGING_SUFFIX, RETIRED_SUFFIX)


class OutputOutsideRoot(ValueError):
    """An item's output would land outside the output root."""


class MissingOutput(FileNotFoundError):
    """A task returned without writing an output it declared."""


class DoneElsewhere(Exception):
    """Another run completed the item since the plan looked (this attempt waited for it, or
    came just after): nothing to make."""


class OutputConflict(OSError):
    """Something that is not an earlier output of the same kind sits at a final path."""


def _sibling(final: str, marker: str) -> str:
    # Hidden, beside the final path (so the rename is atomic), and ending with the same
    # extension, so libraries that choose a format by extension write the right one.
    head, tail = os.path.split(final)
    root, ext = os.path.splitext(tail)
    return os.path.join(head, f".{root}{marker}{ext}")


_token_prefix = ""
_token_count = itertools.count()


def _new_token_prefix() -> None:
    # Drawn once per process (again in a forked child, which must not repeat its parent's
    # names), so an attempt's name costs no system call: process id, random hex, counter.
    global _token_prefix, _token_count
    _token_prefix = f"{os.getpid()}-{os.urandom(4).hex()}"
    _token_count = itertools.count()


_new_token_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_token_prefix)


def attempt_token() -> str:
    """Unique per attempt: this process's id, its random hex and a count of its attempts
    (never a dot: see leftover_final)."""
    return f"{_token_prefix}{next(_token_count):x}"


def staging_path(final: str, token: str | None = None) -> str:
    """A staging name of `final`: `a/b.mp4.json` -> `a/.b.mp4.dispatch-part-<token>.json`."""
    return _sibling(final, f"{STAGING_SUFFIX}-{token or attempt_token()}")


def retired_path(final: str) -> str:
    """Where an existing folder output waits while its replacement is moved in."""
    return _sibling(final, RETIRED_SUFFIX)


def is_staging_name(name: str) -> bool:
    """Whether a file name is a staging, retired or lock leftover (never a real output)."""
    return name.startswith(".") and leftover_final(name) is not None


def leftover_final(name: str) -> str | None:
    """The name of the output a leftover belongs to (in the same folder), or None.

    `.b.mp4.dispatch-part-12-ab.json` and `.b.mp4.dispatch-part.json` -> `b.mp4.json`;
    `.b.dispatch-old.txt` -> `b.txt`; `.b.json.dispatch-lock` -> `b.json`.
    """
    if not name.startswith("."):
        return None
    if name.endswith(LOCK_SUFFIX):
        return name[1 : -len(LOCK_SUFFIX)] or None
    for marker in _MARKERS:
        root, found, rest = name[1:].rpartition(marker)
        if not found or not root:
            continue
        if rest.startswith("-"):  # a token: everything up to the extension
            dot = rest.find(".")
            rest = "" if dot < 0 else rest[dot:]
        if rest and not rest.startswith("."):
            continue
        return root + rest
    return None


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
        real_out = os.path.realpath(out)
        for inp in input_roots:
            real_in = os.path.realpath(inp)
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
    # Output folders are resolved once per process: items share a handful of folders.
    return is_inside(os.path.realpath(root), os.path.realpath(folder))


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


def remove_path(path: str) -> None:
    """Remove a file, link or folder if present (one system call when absent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def clear_leftovers(final: str) -> None:
    """Remove every staging, retired or lock leftover of `final` (one listing of its folder).

    Call only while holding the item's claim: then no live attempt owns any of them.
    """
    head, tail = os.path.split(final)
    mine = f".{tail}{LOCK_SUFFIX}"  # released (unlinked) by the claim itself
    try:
        names = os.listdir(head or ".")
    except FileNotFoundError:
        return
    for name in names:
        if name != mine and name[:1] == "." and leftover_final(name) == tail:
            remove_path(os.path.join(head, name))


@contextlib.contextmanager
def _claim_if_free(final: str) -> Iterator[Claim | None]:
    """The item's claim for the block if no live attempt holds it (taken without waiting);
    None when one does, or when its folder is gone or cannot be written."""
    claim = Claim(final)
    try:
        taken = claim.try_acquire()
    except OSError:
        taken = False
    try:
        yield claim if taken else None
    finally:
        if taken:
            claim.release()


def remove_leftovers(paths: Iterable[str]) -> int:
    """Remove leftovers (staging, retired, lock names) whose item no live attempt holds.

    Each is removed under its item's claim, taken without waiting: a live attempt's
    staging is never touched (nor anything where the filesystem has no locks, since it
    may be a live attempt's). Returns how many were removed.
    """
    removed = 0
    for path in paths:
        folder, name = os.path.split(path)
        final = leftover_final(name)
        if final is None:
            continue
        with _claim_if_free(os.path.join(folder, final)) as claim:
            if claim is None or claim.unlocked:
                continue
            if path != claim.path:  # a lock file is released (unlinked) by the claim itself
                remove_path(path)
            removed += 1
    return removed


class Claimed:
    """Hold the claim of the item whose output is `final` for the block (waiting for a live
    holder); the leftovers of an attempt that died holding it are removed first.

    A class rather than a generator: it is entered once per item, millions of times.
    """

    __slots__ = ("final", "_own")

    def __init__(self, final: str) -> None:
        self.final = final
        self._own: Claim | None = None

    def __enter__(self) -> Claim:
        final = self.final
        batch = held_for_batch(final)
        if batch is not None:
            return batch  # claimed with its batch (and its leftovers removed then)
        _make_folder(os.path.dirname(final))
        claim = Claim(final)
        claim.acquire()
        try:
            if claim.orphaned:
                clear_leftovers(final)
        except BaseException:
            claim.release()
            raise
        self._own = claim
        return claim

    def __exit__(self, *exc: object) -> None:
        claim, self._own = self._own, None
        if claim is not None:
            claim.release()


def claimed(final: str) -> Claimed:
    """The claim of the item whose output is `final`, held for a `with` block."""
    return Claimed(final)


@contextlib.contextmanager
def claimed_all(finals: Sequence[str]) -> Iterator[None]:
    """Hold the claims of several items for the block (a batch written by one call)."""
    for final in finals:
        _make_folder(os.path.dirname(final))
    with hold_all(finals) as claims:
        for claim in claims:
            if claim.orphaned:
                clear_leftovers(claim.final)
        yield


def clear_abandoned(final: str) -> None:
    """After the attempt at `final` was killed: remove its leftovers unless a live attempt
    holds the item now."""
    with _claim_if_free(final) as claim:
        if claim is not None and claim.orphaned:
            clear_leftovers(final)


def _kind(path: str) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "symlink" if stat.S_ISLNK(mode) else "special file"


def commit(staging: str, final: str, *, folder: bool) -> None:
    """Move a finished staging file or folder to its final name.

    Only an earlier output of the same kind is replaced (a folder by a folder, a regular
    file by a file); anything else at `final` (the user's file, a link) is left untouched
    and the item fails with `OutputConflict`.
    """
    want = "folder" if folder else "file"
    found = _kind(final)
    if found not in (None, want):
        raise OutputConflict(
            f"{final} is a {found}, not an earlier {want} output: left untouched "
            "(remove it to let this item be written)"
        )
    if folder:
        if found is not None:
            retired = retired_path(final)
            remove_path(retired)
            os.rename(final, retired)
            os.rename(staging, final)
            remove_path(retired)
        else:
            os.rename(staging, final)
    else:
        os.replace(staging, final)


class Staged:
    """A staging path of `final`, new for this attempt, for a `with` block; it becomes
    `final` only if the block succeeds.

    With `folder`, the staging folder is created first and moves into place as a whole;
    `required` names files (relative to the folder) that must exist for it to count.
    On error nothing of this attempt remains. (A class: entered once per item.)
    """

    __slots__ = ("final", "folder", "required", "staging")

    def __init__(self, final: str, *, folder: bool = False, required: Sequence[str] = ()) -> None:
        self.final = final
        self.folder = folder
        self.required = required
        self.staging = ""

    def __enter__(self) -> str:
        final = self.final
        _make_folder(os.path.dirname(final))
        staging = self.staging = staging_path(final)
        if self.folder:
            os.mkdir(staging)
        return staging

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            remove_path(self.staging)
            return
        try:
            self._commit()
        except BaseException:
            remove_path(self.staging)
            raise

    def _commit(self) -> None:
        staging, final = self.staging, self.final
        if not self.folder:
            try:
                commit(staging, final, folder=False)
            except FileNotFoundError:
                # Asked only on failure: a missing staging file is the task's omission.
                if not os.path.lexists(staging):
                    raise MissingOutput(f"nothing was written to {staging} for {final}") from None
                raise
            return
        if not os.path.lexists(staging):
            raise MissingOutput(f"nothing was written to {staging} for {final}")
        missing = [r for r in self.required if not os.path.lexists(os.path.join(staging, r))]
        if missing:
            raise MissingOutput(
                f"the task did not write {', '.join(map(repr, missing))} into {staging}"
            )
        commit(staging, final, folder=True)


def staged(final: str, *, folder: bool = False, required: Sequence[str] = ()) -> Staged:
    """A staging path of `final` for a `with` block, committed if the block succeeds."""
    return Staged(final, folder=folder, required=required)


class _AtomicWrite:
    __slots__ = ("_claimed", "_staged")

    def __init__(self, final: str) -> None:
        # Claimed like a template's output: a concurrent writer of the same path waits, and
        # the next writer after a killed one removes what it left.
        self._claimed = Claimed(final)
        self._staged = Staged(final)

    def __enter__(self) -> str:
        self._claimed.__enter__()
        try:
            return self._staged.__enter__()
        except BaseException:
            self._claimed.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._staged.__exit__(*exc)  # type: ignore[arg-type]
        finally:
            self._claimed.__exit__(None, None, None)


def atomic_write(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[str]:
    """Yield a staging path to write; it becomes `path` only if the block succeeds.

    ```python
    with atomic_write(out) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)
    ```
    The staging name is new for each attempt and writers of one path take turns, so each
    commits only its own complete file; on error nothing remains.
    """
    return _AtomicWrite(os.fspath(path))


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
