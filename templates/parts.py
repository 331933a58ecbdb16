"""Which item source a stage runs when its items' results are parts of files: one place
for every adapter, so the decision is not made again in each of them.

A template whose output mode packs rows (`OutputPacked`) always runs `PartItems`, cut or
not (so a run refuses the parts another cut made); `--rows-per-item` then sets its N. A
task that makes one output file per input file (ModelArts mode 1, ClearML) is wrapped in
`RangeItems` only when `--rows-per-item` asks. The item-source modules load only then.
"""

from __future__ import annotations

from typing import Any

from dispatcher.items import ItemSource
from dispatcher.storage import urls


def packed_parts(source: ItemSource) -> tuple[ItemSource, Any]:
    """(the source to run, the packing output mode or None) for a template's source."""
    mode = getattr(source, "output_mode", None)
    if not getattr(mode, "packs_rows", False):
        return source, None
    from templates.range_items import PartItems

    return PartItems(source, None), mode  # type: ignore[arg-type]


def cut_parts(source: ItemSource, rows_per_item: int) -> bool:
    """Set N on a packed source; False for a source that packs no parts."""
    from templates.range_items import PartItems

    if not isinstance(source, PartItems):
        return False
    source.rows_per_item = rows_per_item
    return True


def joined_ranges(task: Any, source: ItemSource, rows_per_item: int) -> ItemSource | str:
    """`source` cut into row ranges joined per file (`RangeItems`), or why it cannot be."""
    if any(map(urls.is_url, [*task.input_roots(), *task.output_roots()])):
        return "has a root in an object store (row ranges are read from local files)"
    from templates.joined_ranges import RangeItems

    return RangeItems(source, rows_per_item)  # type: ignore[arg-type]
