"""The plan: enumerate items in canonical order, keep this shard's, drop the done ones.

Runs once, in the parent, before any backbone is involved: it asks the stage's item
source (`dispatcher.items`) for the items, their final paths and which are done; backbones
receive only the pending items and never enumerate, shard or check outputs themselves. Rows known only
once loaded (an own dataloader) are checked here too, batch by batch (`pending_rows`). It holds each item
once and builds no per-item objects beyond the lists it returns, so a plan over millions
of template items (a key string and a None payload each) stays small.
"""

from __future__ import annotations

import gc
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice, repeat

from dispatcher import sharding
from dispatcher.errors import UsageError
from dispatcher.items import Item
from dispatcher.manifest import Manifest, read_items, read_segment
from dispatcher.outputs import unsafe_reason
from dispatcher.sharding import SegmentShard, ShardSpec
from dispatcher.stage import Batch, Stage


@dataclass
class Plan:
    found: int
    in_shard: int
    done: int
    pending: list[Item]
    shards: list[ShardSpec] = field(default_factory=list)
    duplicates: int = 0
    """Items dropped because an earlier item had the same key (each key runs once)."""
    duplicate_keys: list[str] = field(default_factory=list)
    """The first few keys that were repeated (for --plan, the summary and run.json)."""
    leftovers: list[str] = field(default_factory=list)
    """Staging, retired and lock leftovers seen in the output listings the plan read."""
    limited_from: int | None = None
    """How many items were pending before `--limit` kept the first ones (None: no limit)."""

    @property
    def to_run(self) -> int:
        return len(self.pending)


SHOWN_DUPLICATES = 5
"""How many repeated keys a plan names."""


def sorted_unique(items: list[Item]) -> tuple[list[Item], list[str], list[str]]:
    """Sort `items` by key in place; drop repeated keys (the first one stays).

    Returns (items, keys, the dropped items' keys in key order, one per dropped item).
    Items that arrive strictly sorted (template walks produce them so) are only checked,
    not sorted.
    """
    keys = list(map(operator.itemgetter(0), items))
    if all(map(operator.lt, keys, islice(keys, 1, None))):
        return items, keys, []
    items.sort(key=operator.itemgetter(0))
    keys = list(map(operator.itemgetter(0), items))
    repeats = list(map(operator.eq, islice(keys, 1, None), keys))
    if not any(repeats):
        return items, keys, []
    repeated = list(compress(islice(keys, 1, None), repeats))
    keep = [True, *map(operator.not_, repeats)]
    return list(compress(items, keep)), list(compress(keys, keep)), repeated


def first_distinct(keys: list[str], limit: int = SHOWN_DUPLICATES) -> list[str]:
    """The first `limit` distinct keys of a sorted list."""
    shown: list[str] = []
    for key in keys:
        if not shown or shown[-1] != key:
            shown.append(key)
            if len(shown) == limit:
                break
    return shown


def make_plan(stage: Stage, shards: Sequence[ShardSpec], force: bool = False) -> Plan:
    """Enumerate, sort by key, shard, and filter out done items (unless `force`)."""
    # Millions of new tuples and strings, none of them in cycles: the cyclic collector
    # would only rescan them again and again (a third of the time of a large rerun).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _make_plan(stage, shards, force)
    finally:
        if collecting:
            gc.enable()


def _make_plan(stage: Stage, shards: Sequence[ShardSpec], force: bool) -> Plan:
    source = stage.source
    produced = source.items()
    items = produced if isinstance(produced, list) else list(produced)
    items, keys, repeated = sorted_unique(items)
    found = len(items)
    _refuse_nested_outputs(keys, source.final_outputs(keys))
    selected = sharding.select(items, keys, shards, source.shard_groups(keys))
    del keys
    leftovers: list[str] = []
    if force:
        pending = selected  # each item clears its own leftovers when it runs
    else:
        mask = list(source.done_mask(selected))
        if len(mask) != len(selected):
            raise RuntimeError(
                f"{type(source).__name__}.done_mask answered for {len(mask)} items, "
                f"not {len(selected)}"
            )
        pending = list(compress(selected, map(operator.not_, mask)))
        leftovers = list(source.leftovers(selected, items))
    del items
    return Plan(
        found=found,
        in_shard=len(selected),
        done=len(selected) - len(pending),
        pending=pending,
        shards=list(shards),
        duplicates=len(repeated),
        duplicate_keys=first_distinct(repeated),
        leftovers=leftovers,
    )


def plan_from_manifest(
    stage: Stage, manifest: Manifest, shards: Sequence[ShardSpec], force: bool = False
) -> Plan:
    """The plan of a run over a manifest: its segment's items (every segment's without
    `--shard`), read from it instead of enumerated, then the done check.

    No leftovers are listed: a segment's run knows no other segment's items, whose
    staging may lie in the same folders (each item clears its own when it runs).
    """
    last = shards[-1] if shards else None
    if isinstance(last, SegmentShard):
        items = read_segment(manifest, last.index)
    else:
        items = read_items(manifest)
    pending = items
    if not force:
        stage.source.narrow_listings(items)
        mask = list(stage.source.done_mask(items))
        pending = list(compress(items, map(operator.not_, mask)))
        stage.source.forget_listings()
    return Plan(
        found=manifest.items,
        in_shard=len(items),
        done=len(items) - len(pending),
        pending=pending,
        shards=list(shards),
    )


def limited(plan: Plan, limit: int | None) -> Plan:
    """The plan of a trial run (`--limit N`): only its first `limit` pending items, in plan
    order; the rest stay pending for the next run."""
    if limit is not None and limit < len(plan.pending):
        plan.limited_from = len(plan.pending)
        plan.pending = plan.pending[:limit]
    return plan


def pending_rows(stage: Stage, batch: Batch, size: int) -> tuple[list[int], list[int]]:
    """(rows left to compute, rows found done) of a batch whose rows were known only once
    loaded: the plan's done check for them, asked batch by batch by the backbone.

    Under `--force`, or for a task without a done check, every row is left. Raises what
    the task's check raised (the caller fails the batch's rows with it).
    """
    every = list(range(size))
    if stage.force:
        return every, []
    mask = stage.source.done_after_load(batch, size)
    if mask is None:
        return every, []
    if len(mask) != size:
        raise RuntimeError(f"the done check answered for {len(mask)} rows, not {size}")
    return [i for i in every if not mask[i]], [i for i in every if mask[i]]


SHOWN_CONFLICTS = 3


def _refuse_nested_outputs(keys: list[str], finals: Iterable[str] | None) -> None:
    """Refuse items whose committed output lies inside another item's output folder:
    committing the outer one (or replacing it under --force) would delete the inner one."""
    if finals is None:
        return
    finals = list(finals)
    pairs = nested_outputs(keys, finals)
    if pairs:
        # A key that would leave the output root never commits (it fails alone, with
        # OutputOutsideRoot, when it runs): only the keys that can commit may nest. Looked
        # at only here, so a dataset whose outputs do not nest pays nothing for it.
        safe = [unsafe_reason(key) is None for key in keys]
        if not all(safe):
            pairs = nested_outputs(list(compress(keys, safe)), list(compress(finals, safe)))
    if pairs:
        shown = "; ".join(f"{outer!r} holds {inner!r}" for outer, inner in pairs[:SHOWN_CONFLICTS])
        more = f" (and {len(pairs) - SHOWN_CONFLICTS} more)" if len(pairs) > SHOWN_CONFLICTS else ""
        raise UsageError(
            f"items whose outputs nest inside each other's output folder: {shown}{more}; "
            "committing one would replace the other: give them non-nesting keys"
        )


def nested_outputs(keys: Sequence[str], finals: Sequence[str]) -> list[tuple[str, str]]:
    """(outer key, inner key) for every final path that lies inside another's.

    Set operations on the folders of the final paths (C-level iterators: a dataset of
    flat keys costs one pass); only when some folder is itself a final path are the
    pairs named.
    """
    slash = repeat("/")
    folders = set(map(operator.itemgetter(0), map(str.rpartition, finals, slash)))
    frontier = folders
    while frontier:  # every ancestor folder, not only the parent
        frontier = set(map(operator.itemgetter(0), map(str.rpartition, frontier, slash)))
        frontier -= folders
        folders |= frontier
    folders.discard("")
    if folders.isdisjoint(finals):
        return []
    outer = {final: key for final, key in zip(finals, keys, strict=True) if final in folders}
    pairs = []
    for final, key in zip(finals, keys, strict=True):
        parent = final.rpartition("/")[0]
        while parent:
            if parent in outer:
                pairs.append((outer[parent], key))
                break
            parent = parent.rpartition("/")[0]
    return pairs
