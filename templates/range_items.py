"""Row ranges as items, joined into one output per file: the item source of
`--rows-per-item` for a task that makes one output file from one input file (a ModelArts
mode-1 package).

A big file's items are its ranges (`templates/row_ranges.py`), keyed
`data/a.jsonl@00012-of-00040`; a small file stays one item, as without the option. Each
range's result is a *part*, committed in a hidden folder beside the file's output,
`.a.jsonl.dispatch-rows-N/` (N: the rows per item it was cut with). The attempt that
commits a file's last missing part joins the parts into the file's output under the
output's claim, commits it, and removes the folder; a kill before the join leaves every
part, and the next run joins them before its first item (`settle`). So a file's output
appears whole, once, as without the option, and a rerun makes only the missing parts.

Where the parts meet: every range of a file is in the shard of the file's key
(`shard_groups`), so one run (or one array task) makes a whole file; within a run its
engine spreads the ranges over its workers or devices, and whichever commits the last
part joins them.

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
from dispatcher.items import Item, ItemSource
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
from templates.row_ranges import RowRange, cut, file_format, join_parts, parse_range_key

PARTS_MARK = ".dispatch-rows-"
"""`.NAME.dispatch-rows-N`: the folder of a file's parts, beside its output."""
SHOWN = 3


def parts_folder_name(final_name: str, rows_per_item: int) -> str:
    return f".{final_name}{PARTS_MARK}{rows_per_item}"


def parts_folder_rows(name: str, final_name: str) -> int | None:
    """The N of a parts folder of the output `final_name`, None for any other name."""
    prefix = f".{final_name}{PARTS_MARK}"
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(rest) if rest.isascii() and rest.isdigit() else None


class CutItems(ItemSource):
    """The items of a per-file template source (`inner`) with big files cut into row
    ranges: what both ways of committing a range's result share."""

    def __init__(self, inner: TemplateItems, rows_per_item: int | None) -> None:
        self.inner = inner
        self.rows_per_item = rows_per_item
        """About how many rows an item holds; None: every file is one item."""
        self.output_root = inner.output_root
        self.read_root = inner.read_root
        self.output_mode = inner.output_mode

    def root_problems(self) -> list[str]:
        return self.inner.root_problems()

    # --- items -------------------------------------------------------------------------------

    def items(self) -> list[Item]:
        items: list[Item] = []
        uncut: list[str] = []
        root, rows = self.inner.input_root, self.rows_per_item
        for key, payload in self.inner.items():
            if rows is None:  # not cut: each file is its item, as without ranges
                items.append((key, payload))
                continue
            if parse_range_key(key) is not None:
                raise UsageError(
                    f"{os.path.join(root, key)}: its name reads as a row range of another "
                    "file (NAME@00001-of-00002): rename it to use --rows-per-item"
                )
            if payload is not None or file_format(key) is None:
                items.append((key, payload))
                continue
            ranges = cut(os.path.join(root, key), key, rows)
            if ranges.reason:
                uncut.append(f"{key} ({ranges.reason})")
            if len(ranges.ranges) == 1:
                items.append((key, payload))
            else:
                items += [(part.key, part) for part in ranges.ranges]
        if uncut:
            more = f" and {len(uncut) - SHOWN} more" if len(uncut) > SHOWN else ""
            note(f"files kept whole, one item each: {'; '.join(uncut[:SHOWN])}{more}")
        return items

    def shard_groups(self, keys: Sequence[str]) -> list[str]:
        return [_file_of(key) for key in keys]

    def payload(self, key: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, RowRange):
            return self.inner.payload(key, payload)
        kwargs = self.inner.payload(payload.file, None)
        kwargs["range"] = payload
        return kwargs

    def describe(self, key: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, RowRange):
            return self.inner.describe(key, payload)
        described = self.inner.describe(payload.file, None)
        unit = "row groups" if file_format(payload.file) == ".parquet" else "bytes"
        described["range"] = (
            f"{payload.index + 1} of {payload.count}: {unit} {payload.start}-{payload.end}"
        )
        return described

    def origin(self) -> str:
        return self.inner.origin()

    def lease(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.lease(*args, **kwargs)


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
        return self.inner.final_outputs([_file_of(key) for key in keys])

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
        files = list(dict.fromkeys(_file_of(key) for key, _ in items))
        done = dict(zip(files, self.inner.done_mask([(f, None) for f in files]), strict=True))
        counts = {}
        for key, _ in items:
            parsed = parse_range_key(key)
            if parsed is not None:
                counts[parsed[0]] = parsed[2]
        listed: dict[str, frozenset[str]] = {}
        made: dict[str, frozenset[str]] = {}
        refused: list[str] = []
        self._unjoined, self._stale = [], []
        for file, count in counts.items():
            folder, name, parts = self._parts_dir(file)
            if folder not in listed:
                listed[folder] = _names(folder)
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
            names = made[file] = _names(parts) if self.rows_per_item in found else frozenset()
            self._stale += [os.path.join(parts, n) for n in names if is_staging_name(n)]
            if all(part_name(name, i, count) in names for i in range(count)):
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

    def _mask(
        self, items: Sequence[Item], done: dict[str, bool], made: dict[str, frozenset[str]]
    ) -> Iterator[bool]:
        for key, _ in items:
            parsed = parse_range_key(key)
            if parsed is None:
                yield done[key]
                continue
            file, index, count = parsed
            if done[file]:
                yield True
                continue
            name = os.path.basename(self._final(file))
            yield part_name(name, index, count) in made.get(file, ())

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        """The per-file source's leftovers, the parts folders of joined files, and what
        killed attempts at parts left in the parts folders (all of this shard's files)."""
        files = [(f, None) for f in dict.fromkeys(_file_of(key) for key, _ in items)]
        every = [(f, None) for f in dict.fromkeys(_file_of(key) for key, _ in found)]
        stale = self.__dict__.pop("_stale", [])
        return [*self.inner.leftovers(files, every), *stale]

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
        for n in _names(folder):
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
            names = _names(parts)
            wanted = [part_name(name, i, count) for i in range(count)]
            if not all(n in names for n in wanted):
                return False
            with staged(final) as joined:
                join_parts(
                    [os.path.join(parts, n) for n in wanted], file_format(file) or "", joined
                )
            self._remove_parts(file)
        return True


class PartItems(CutItems):
    """Ranges whose results are outputs of their own (`OutputPacked`): a range's part is
    committed at `OUT/<range key><ext>` like any item's output. Parts that another N cut
    are never mixed in: refused, or under `--force` replaced by this N's. A packed task
    always has this source, cut or not (`rows_per_item` None), so that a run without the
    option refuses the parts of a run with it, and the reverse."""

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        counts: dict[str, int | None] = {}
        for key, _ in items:
            parsed = parse_range_key(key)
            counts[_file_of(key)] = None if parsed is None else parsed[2]
        listed: dict[str, frozenset[str]] = {}
        refused = [
            f"{file} (its outputs hold {foreign[0]})"
            for file, count in counts.items()
            if (foreign := self._other_cuts(file, count, listed))
        ]
        if refused:
            shown = "; ".join(refused[:SHOWN])
            more = f" and {len(refused) - SHOWN} more" if len(refused) > SHOWN else ""
            cutting = (
                "without --rows-per-item, files are one part each"
                if self.rows_per_item is None
                else f"--rows-per-item {self.rows_per_item} cuts files"
            )
            raise UsageError(
                f"{cutting}, but another cut made the parts of {shown}{more}; rerun with the "
                "--rows-per-item that made them, or add --force to make those files' parts again"
            )
        return self.inner.done_mask(items)

    def _other_cuts(
        self, file: str, count: int | None, listed: dict[str, frozenset[str]]
    ) -> list[str]:
        """The outputs of `file` that another cut made: parts of another count, or the
        whole file's part where it is cut now (and the reverse)."""
        final = self.inner.output_mode.final(self.output_root, file)
        folder, whole = os.path.split(final)
        ext = self.inner.output_mode.ext  # type: ignore[attr-defined]
        name = whole[: -len(ext)] if ext else whole
        if folder not in listed:
            listed[folder] = _names(folder)
        other = []
        for n in listed[folder]:
            if n == whole:
                if count is not None:
                    other.append(n)
            elif n.startswith(name + "@") and n.endswith(ext):
                parsed = parse_range_key(n[: len(n) - len(ext)])
                if parsed is not None and parsed[0] == name and parsed[2] != count:
                    other.append(n)
        return sorted(other)

    def settle(self, pending: Sequence[Item], remake: bool) -> None:
        """Under `--force`, the outputs another cut made of the files about to be made go."""
        if not remake:
            return
        counts: dict[str, int | None] = {}
        for key, _ in pending:
            parsed = parse_range_key(key)
            counts[_file_of(key)] = None if parsed is None else parsed[2]
        listed: dict[str, frozenset[str]] = {}
        for file, count in counts.items():
            folder = os.path.dirname(self.inner.output_mode.final(self.output_root, file))
            for n in self._other_cuts(file, count, listed):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, n))

    def final_outputs(self, keys: Sequence[str]) -> Iterable[str] | None:
        return self.inner.final_outputs(keys)

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        return list(self.inner.leftovers(items, found))

    def staged(self, key: str, remake: bool = False) -> contextlib.AbstractContextManager[Any]:
        return self.inner.staged(key, remake)

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return self.inner.claim_all(keys)

    def clear_abandoned(self, key: str) -> None:
        self.inner.clear_abandoned(key)


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


def _file_of(key: str) -> str:
    parsed = parse_range_key(key)
    return key if parsed is None else parsed[0]


def _names(folder: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _is_parts_folder(name: str) -> bool:
    head, mark, rows = name.rpartition(PARTS_MARK)
    return name.startswith(".") and bool(mark) and bool(head) and rows.isascii() and rows.isdigit()
