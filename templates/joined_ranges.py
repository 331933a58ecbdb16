"""Row ranges joined into one output per file: the item source of `--rows-per-item` for
a task that makes one output file from one input file (a ModelArts mode-1 package, a
ClearML `Preprocess`).

Each range's result is a *part*, committed in a hidden folder beside the file's output,
`.a.jsonl.dispatch-rows-N/` (N: the rows per item it was cut with). The attempt that
commits a file's last missing part joins the parts into the file's output under the
output's claim, commits it, and removes the folder; a kill before the join leaves every
part, and the next run joins them before its first item (`settle`). So a file's output
appears whole, once, as without the option, and a rerun makes only the missing parts.

Parts made with another N are never mixed in: a run finding them refuses to start
(exit 2) and names the N they were made with; `--force` starts those files over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dispatcher.errors import UsageError
from dispatcher.items import Item
from dispatcher.outputs import (
    Claimed,
    DoneElsewhere,
    alone_in,
    clear_abandoned,
    is_staging_name,
    staged,
)
from dispatcher.report.log import note
from templates.items import TemplateItems
from templates.range_items import SHOWN, CutItems, file_of, folder_names, range_counts
from templates.row_ranges import file_format, join_parts, parse_range_key

PARTS_MARK = ".dispatch-rows-"
"""`.NAME.dispatch-rows-N`: the folder of a file's parts, beside its output."""


def parts_folder_name(final_name: str, rows_per_item: int) -> str:
    return f".{final_name}{PARTS_MARK}{rows_per_item}"


def parts_folder_rows(name: str, final_name: str) -> int | None:
    """The N of a parts folder of the output `final_name`, None for any other name."""
    prefix = f".{final_name}{PARTS_MARK}"
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(rest) if rest.isascii() and rest.isdigit() else None


class RangeItems(CutItems):
    """Ranges whose results are parts, joined into the file's one output."""

    def __init__(self, inner: TemplateItems, rows_per_item: int) -> None:
        super().__init__(inner, rows_per_item)
        self._unjoined: list[tuple[str, int]] = []
        """(file key, count) of files whose parts are all made but not joined (parent)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_unjoined"] = []
        return state

    def final_outputs(self, keys: Sequence[str]) -> Iterable[str] | None:
        return self.inner.final_outputs([file_of(key) for key in keys])

    # --- done --------------------------------------------------------------------------------

    def _final(self, file: str) -> str:
        return self.inner.output_mode.final(self.output_root, file)

    def _parts_dir(self, file: str, rows: int | None = None) -> tuple[str, str, str]:
        """(output folder, output name, parts folder) of a cut file."""
        folder, name = os.path.split(self._final(file))
        return (
            folder,
            name,
            os.path.join(folder, parts_folder_name(name, rows or self.rows_per_item)),
        )

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        """A whole file: the per-file check. A range: done when its file's output is
        there, or its own part; parts made with another N are refused."""
        counts = range_counts(items)
        files = list(counts)
        done = dict(zip(files, self.inner.done_mask([(f, None) for f in files]), strict=True))
        listed: dict[str, frozenset[str]] = {}
        made: dict[str, set[int]] = {}  # file -> the ranges whose parts are made
        refused: list[str] = []
        self._unjoined, self._stale = [], []
        for file, count in counts.items():
            if count is None:
                continue  # not cut: the per-file check alone
            folder, name, parts = self._parts_dir(file)
            if folder not in listed:
                listed[folder] = folder_names(folder)
            found = {
                rows: n for n in listed[folder] if (rows := parts_folder_rows(n, name)) is not None
            }
            if done[file]:  # joined: what is left of its parts goes
                self._stale += [os.path.join(folder, n) for n in found.values()]
                continue
            other = sorted(rows for rows in found if rows != self.rows_per_item)
            if other:
                refused.append(f"{file} (made with --rows-per-item {other[0]})")
                continue
            names = folder_names(parts) if self.rows_per_item in found else frozenset()
            self._stale += [os.path.join(parts, n) for n in names if is_staging_name(n)]
            made[file] = {i for i in range(count) if part_name(name, i, count) in names}
            if len(made[file]) == count:
                self._unjoined.append((file, count))
        if refused:
            shown = "; ".join(refused[:SHOWN])
            more = f" and {len(refused) - SHOWN} more" if len(refused) > SHOWN else ""
            raise UsageError(
                f"--rows-per-item {self.rows_per_item} is not the N that cut the files "
                f"whose parts are made: {shown}{more}; rerun with that N, or add --force "
                "to start those files over"
            )
        return self._mask(items, done, made)

    @staticmethod
    def _mask(
        items: Sequence[Item], done: dict[str, bool], made: dict[str, set[int]]
    ) -> Iterator[bool]:
        for key, _ in items:
            parsed = parse_range_key(key)
            if parsed is None:
                yield done[key]
            else:
                file, index, _ = parsed
                yield done[file] or index in made.get(file, ())

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        """The per-file source's leftovers, the parts folders of joined files, and what
        killed attempts at parts left in the parts folders (all of this shard's files)."""
        files = [(f, None) for f in dict.fromkeys(file_of(key) for key, _ in items)]
        every = [(f, None) for f in dict.fromkeys(file_of(key) for key, _ in found)]
        stale = self.__dict__.pop("_stale", [])
        return [*self.inner.leftovers(files, every), *stale]

    def forget_listings(self) -> None:
        super().forget_listings()
        self.__dict__.pop("_stale", None)

    def remove_leftovers(self, leftovers: Sequence[str]) -> int:
        folders = [p for p in leftovers if _is_parts_folder(os.path.basename(p))]
        for path in folders:
            shutil.rmtree(path, ignore_errors=True)
        rest = [p for p in leftovers if not _is_parts_folder(os.path.basename(p))]
        return len(folders) + super().remove_leftovers(rest)

    def settle(self, pending: Sequence[Item], remake: bool) -> None:
        """Join the files whose parts a killed run made all of; under `--force`, remove
        the parts earlier runs made of the files about to be cut again."""
        if remake:
            cut_files = {parsed[0] for key, _ in pending if (parsed := parse_range_key(key))}
            for file in sorted(cut_files):
                self._remove_parts(file)
            return
        unjoined, self._unjoined = self._unjoined, []
        for file, count in unjoined:
            self.join(file, count, remake=False)
        if unjoined:
            note(f"joined the parts of {len(unjoined)} file(s) an earlier run made in full")

    def _remove_parts(self, file: str) -> None:
        folder, name, _ = self._parts_dir(file)
        for n in folder_names(folder):
            if parts_folder_rows(n, name) is not None:
                shutil.rmtree(os.path.join(folder, n), ignore_errors=True)

    # --- outputs ----------------------------------------------------------------------------

    def staged(self, key: str, remake: bool = False) -> contextlib.AbstractContextManager[Any]:
        parsed = parse_range_key(key)
        if parsed is None:
            return self.inner.staged(key, remake)
        return StagedPart(self, *parsed, remake)

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return self.inner.claim_all([key for key in keys if parse_range_key(key) is None])

    def clear_abandoned(self, key: str) -> None:
        parsed = parse_range_key(key)
        if parsed is None:
            self.inner.clear_abandoned(key)
            return
        file, index, count = parsed
        _, name, parts = self._parts_dir(file)
        clear_abandoned(os.path.join(parts, part_name(name, index, count)))

    def join(self, file: str, count: int, remake: bool) -> bool:
        """Join the file's parts into its output, if every one is made; under the output's
        claim, so of two attempts that made the last parts one joins. Whether it joined."""
        final = self._final(file)
        _, name, parts = self._parts_dir(file)
        with Claimed(final):
            if not remake and os.path.lexists(final):
                self._remove_parts(file)  # joined by another attempt meanwhile
                return False
            names = folder_names(parts)
            wanted = [part_name(name, i, count) for i in range(count)]
            if not all(n in names for n in wanted):
                return False
            with staged(final) as joined:
                join_parts(
                    [os.path.join(parts, n) for n in wanted], file_format(file) or "", joined
                )
            self._remove_parts(file)
        return True


class StagedPart:
    """A range's part, for its `with` block: claimed (unless the run is alone on its
    items), staged in the file's parts folder and committed there on success; then, if it
    was the file's last missing part, the parts are joined into the file's output."""

    def __init__(self, source: RangeItems, file: str, index: int, count: int, remake: bool) -> None:
        self.source, self.file, self.index, self.count = source, file, index, count
        self.remake = remake
        _, name, parts = source._parts_dir(file)
        self.parts, self.part = parts, os.path.join(parts, part_name(name, index, count))
        self.final = source._final(file)
        self._claimed: Claimed | None = None
        self._stage: Any = None

    def __enter__(self) -> dict[str, Any]:
        if not alone_in(self.source.output_root):
            self._claimed = Claimed(self.part)
            self._claimed.__enter__()
        try:
            if not self.remake and self._claimed is not None and self._made():
                raise DoneElsewhere(f"{self.file} range {self.index} was made by another run")
            os.makedirs(self.parts, exist_ok=True)  # removed when a file is joined: made anew
            self._stage = self.source.inner.output_mode.stage_final(self.part)
            return self._stage.__enter__()
        except BaseException:
            self._release()
            raise

    def _made(self) -> bool:
        return os.path.lexists(self.part) or os.path.lexists(self.final)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            try:
                self._stage.__exit__(exc_type, *exc)
            except FileNotFoundError:
                if os.path.lexists(self.final):  # joined (and its parts removed) meanwhile
                    raise DoneElsewhere(f"{self.file} was completed by another run") from None
                raise
        finally:
            self._release()
        if exc_type is None:
            self.source.join(self.file, self.count, self.remake)

    def _release(self) -> None:
        claimed, self._claimed = self._claimed, None
        if claimed is not None:
            claimed.__exit__(None, None, None)


def part_name(final_name: str, index: int, count: int) -> str:
    """A part's name in its parts folder: its place, and the output's extension (so a
    format chosen by extension is the output's)."""
    width = max(5, len(str(count)))
    return f"{index:0{width}d}-of-{count:0{width}d}{os.path.splitext(final_name)[1]}"


def _is_parts_folder(name: str) -> bool:
    head, mark, rows = name.rpartition(PARTS_MARK)
    return name.startswith(".") and bool(mark) and bool(head) and rows.isascii() and rows.isdigit()
