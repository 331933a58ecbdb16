"""Row ranges as items: the item sources of `--rows-per-item`, over a per-file template
source whose big files they cut (`templates/row_ranges.py`).

A big file's items are its ranges, keyed `data/a.jsonl@00012-of-00040`; a small file
stays one item, as without the option. Every range of a file is in the shard of the
file's key (`shard_groups`), so one run (or one array task) makes a whole file; within a
run its engine spreads the ranges over its workers or devices.

Two ways to commit a range's result: `PartItems` (here), where each range's part is an
output of its own (`OutputPacked`), and `RangeItems` (`templates/joined_ranges.py`),
where the parts are joined into the file's one output.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dispatcher.errors import UsageError
from dispatcher.items import Item, ItemSource
from dispatcher.report.log import note
from templates.items import TemplateItems
from templates.row_ranges import RowRange, cut, file_format, parse_range_key

SHOWN = 3


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
        return [file_of(key) for key in keys]

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


class PartItems(CutItems):
    """Ranges whose results are outputs of their own (`OutputPacked`): a range's part is
    committed at `OUT/<range key><ext>` like any item's output. Parts that another N cut
    are never mixed in: refused, or under `--force` replaced by this N's. A packed task
    always has this source, cut or not (`rows_per_item` None), so that a run without the
    option refuses the parts of a run with it, and the reverse."""

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        counts = range_counts(items)
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
            listed[folder] = folder_names(folder)
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
        counts = range_counts(pending)
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

    def narrow_listings(self, items: Sequence[Item]) -> None:
        self.inner.narrow_listings(items)

    def forget_listings(self) -> None:
        self.inner.forget_listings()

    def staged(self, key: str, remake: bool = False) -> contextlib.AbstractContextManager[Any]:
        return self.inner.staged(key, remake)

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return self.inner.claim_all(keys)

    def clear_abandoned(self, key: str) -> None:
        self.inner.clear_abandoned(key)


def range_counts(items: Sequence[Item]) -> dict[str, int | None]:
    """File key -> how many ranges it was cut into (None: it was not cut)."""
    counts: dict[str, int | None] = {}
    for key, _ in items:
        parsed = parse_range_key(key)
        counts[key if parsed is None else parsed[0]] = None if parsed is None else parsed[2]
    return counts


def file_of(key: str) -> str:
    """The key of the file a range key names (any other key is its own file)."""
    parsed = parse_range_key(key)
    return key if parsed is None else parsed[0]


def folder_names(folder: str) -> frozenset[str]:
    """The names in `folder` (none when it is missing or unreadable)."""
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()
