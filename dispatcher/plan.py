"""The plan: enumerate items in canonical order, keep this shard's, drop the done ones.

Runs once, in the parent, before any backbone is involved; backbones receive only the
pending items and never enumerate, shard or check outputs themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dispatcher.sharding import ShardSpec, apply_shards
from dispatcher.task import Item, Task


@dataclass
class Plan:
    found: int
    in_shard: int
    done: int
    pending: list[Item]
    shards: list[ShardSpec] = field(default_factory=list)
    duplicates: int = 0

    @property
    def to_run(self) -> int:
        return len(self.pending)


def make_plan(task: Task, shards: Sequence[ShardSpec], force: bool = False) -> Plan:
    """Enumerate, sort by key, shard, and filter out done items (unless `force`)."""
    items = list(task.iter_items())
    items.sort(key=lambda item: item[0])
    unique: list[Item] = []
    last = None
    for item in items:
        if item[0] != last:
            unique.append(item)
            last = item[0]
    duplicates = len(items) - len(unique)
    del items
    keys = [key for key, _ in unique]
    selected = [unique[p] for p in apply_shards(keys, shards)]
    del keys
    if force:
        pending = selected
    else:
        pending = [
            item
            for item, done in zip(selected, task.executed_mask(selected), strict=True)
            if not done
        ]
    return Plan(
        found=len(unique),
        in_shard=len(selected),
        done=len(selected) - len(pending),
        pending=pending,
        shards=list(shards),
        duplicates=duplicates,
    )
