"""Writing under a staging name and committing it: `Staged` for an item's output,
`atomic_write` for any file, `commit` replacing only an earlier output of the same kind."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence

from dispatcher.outputs.claiming import NOT_CLAIMED, Claimed
from dispatcher.outputs.errors import MissingOutput, OutputConflict
from dispatcher.outputs.lease import alone_under
from dispatcher.outputs.leftovers import remove_path
from dispatcher.outputs.names import retired_path, staging_path_in
from dispatcher.outputs.paths import make_folder
from dispatcher.storage import urls


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
    `fresh`: the plan saw nothing at `final` and no other run may write it since (the run
    is alone on its items), so whatever is there now is this run's own earlier output: a
    file is committed by the rename alone, without looking at what it replaces first.
    On error nothing of this attempt remains. (A class: entered once per item.)
    """

    __slots__ = ("final", "folder", "required", "fresh", "staging")

    def __init__(
        self,
        final: str,
        *,
        folder: bool = False,
        required: Sequence[str] = (),
        fresh: bool = False,
    ) -> None:
        self.final = final
        self.folder = folder
        self.required = required
        self.fresh = fresh
        self.staging = ""

    def __enter__(self) -> str:
        head, tail = os.path.split(self.final)
        make_folder(head)
        staging = self.staging = staging_path_in(head, tail)
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
                if self.fresh:
                    os.replace(staging, final)
                else:
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
        # the next writer after a killed one removes what it left; unless the run is alone
        # under the path's output root.
        self._claimed = NOT_CLAIMED if alone_under(final) else Claimed(final)
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
    commits only its own complete file; on error nothing remains. `path` may be a URL
    (`s3://`, `obs://`): the staging path is then a local scratch file, uploaded whole on
    success (`dispatcher.outputs.objects`); `file://` names a local path.
    """
    path = os.fspath(path)
    if urls.is_url(path):
        from dispatcher.outputs.objects import StagedObject

        return StagedObject(urls.canonical(path))
    return _AtomicWrite(urls.local(path))
