"""Shard membership as a pure function of (key or canonical index, shard spec).

Index shards take every N-th item of the sorted list (nested specs re-index inside the
previous shard); hash shards take the items whose xxhash64(key) mod N is the shard, so
membership survives items being added or removed elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from dispatcher.environment import detect_shard, slurm_array_task
from dispatcher.errors import UsageError

T = TypeVar("T")


def hash_bucket(key: str, count: int) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogateescape")) % count


@dataclass(frozen=True)
class IndexShard:
    """Items whose position in the sorted list, mod `shard_num`, is one of `shard_idx`."""

    shard_idx: int | Sequence[int] = 0
    shard_num: int = 1

    def indices(self) -> list[int]:
        idx = self.shard_idx
        return [idx] if isinstance(idx, int) else list(idx)

    def validate(self, where: str) -> list[str]:
        problems = []
        if (
            not isinstance(self.shard_num, int)
            or isinstance(self.shard_num, bool)
            or self.shard_num < 1
        ):
            return [f"{where}: shard_num must be a positive integer, got {self.shard_num!r}"]
        idx = self.shard_idx
        values = (
            [idx] if isinstance(idx, int) else list(idx) if isinstance(idx, (list, tuple)) else None
        )
        if not values or any(not isinstance(i, int) or isinstance(i, bool) for i in values):
            return [f"{where}: shard_idx must be an integer or a list of integers, got {idx!r}"]
        for i in values:
            if not 0 <= i < self.shard_num:
                problems.append(
                    f"{where}: shard_idx {i} is out of range for shard_num {self.shard_num}"
                )
        if len(set(values)) != len(values):
            problems.append(f"{where}: shard_idx {values} repeats an index")
        return problems

    @property
    def keeps_all(self) -> bool:
        """Every position is chosen (every index of `shard_num`), so selecting is a no-op."""
        return len(set(self.indices())) == self.shard_num

    def select(self, keys: Sequence[str]) -> list[int]:
        """Positions (into `keys`) that belong to this shard."""
        n, total = self.shard_num, len(keys)
        wanted = sorted(set(self.indices()))
        if len(wanted) == 1:
            return list(range(wanted[0], total, n))
        chosen = set(wanted)
        return [i for i in range(total) if i % n in chosen]


@dataclass(frozen=True)
class HashShard:
    """Items whose xxhash64(key) mod `count` equals `index`."""

    index: int = 0
    count: int = 1

    def validate(self, where: str) -> list[str]:
        for name in ("index", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                return [f"{where}: shard {name} must be an integer, got {value!r}"]
        if self.count < 1:
            return [f"{where}: shard count must be at least 1, got {self.count}"]
        if not 0 <= self.index < self.count:
            return [f"{where}: shard {self.index} is out of range for {self.count} shards"]
        return []

    @property
    def keeps_all(self) -> bool:
        """A single shard holds every item, so selecting is a no-op."""
        return self.count == 1

    def select(self, keys: Sequence[str]) -> list[int]:
        """Positions (into `keys`) whose key hashes into this shard."""
        import xxhash

        digest, count, index = xxhash.xxh64_intdigest, self.count, self.index
        return [
            i
            for i, key in enumerate(keys)
            if digest(key.encode("utf-8", "surrogateescape")) % count == index
        ]


@dataclass(frozen=True)
class SegmentShard:
    """Segment `index` of the `count` a manifest holds (`--manifest FILE --shard I/N`): its
    items are read from the manifest, never selected from an enumeration. The manifest
    names the way of sharding: its segments are disjoint, and nothing else's are."""

    index: int
    count: int
    manifest: str

    def validate(self, where: str) -> list[str]:
        return HashShard(self.index, self.count).validate(where)

    @property
    def keeps_all(self) -> bool:
        return False

    def select(self, keys: Sequence[str]) -> list[int]:
        raise TypeError("a manifest's segment is read from it, not selected")


ShardSpec = IndexShard | HashShard | SegmentShard


def select(
    items: list[T],
    keys: Sequence[str],
    specs: Sequence[ShardSpec],
    groups: Sequence[str] | None = None,
) -> list[T]:
    """The members of `items` (sorted, with their `keys`) kept by every spec in turn,
    each inside the previous; a spec that keeps everything costs nothing.

    With `groups` (one per item: the row ranges of one file share their file's key), a
    spec shards the distinct groups, in order of first appearance, and keeps every item of
    a group it keeps: the items of one group are never in two shards."""
    for spec in specs:
        if spec.keeps_all:
            continue
        if groups is None:
            chosen = spec.select(keys)
        else:
            distinct = list(dict.fromkeys(groups))
            kept = {distinct[i] for i in spec.select(distinct)}
            chosen = [i for i, group in enumerate(groups) if group in kept]
            groups = [groups[i] for i in chosen]
        items = [items[i] for i in chosen]
        keys = [keys[i] for i in chosen]
    return items


ALL = "all"
"""`--shard all`: every item, on purpose (in a SLURM array task, where no --shard is refused)."""


def parse_cli_shard(text: str | None, mode: str = "hash") -> ShardSpec | None:
    """`--shard I/N`, `--shard auto` (SLURM array / torchrun / one shard) or `--shard all`."""
    if text is None or text == ALL:
        return None
    if text == "auto":
        try:
            pos = detect_shard()
        except ValueError as exc:
            raise UsageError(f"--shard auto: {exc}") from None
        index, count, where = pos.index, pos.count, f"--shard auto ({pos.source})"
    else:
        parts = text.split("/")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise UsageError(f"--shard expects I/N (for example 0/4), auto or all, got '{text}'")
        index, count = int(parts[0]), int(parts[1])
        where = f"--shard {text}"
    spec: ShardSpec = HashShard(index, count) if mode == "hash" else IndexShard(index, count)
    problems = spec.validate(where)
    if problems:
        raise UsageError(*problems)
    return spec


def unsharded_array_problem(text: str | None, task_splits: bool) -> str | None:
    """Why no `--shard` is a mistake here: in a SLURM array every task would then process
    every item (each would redo the others' work). A task that picks its own part (its
    declared shards, a hard shard) is left alone; `--shard all` says it is meant."""
    task_id = slurm_array_task()
    if text is not None or task_splits or task_id is None:
        return None
    return (
        f"this is SLURM array task {task_id} but no --shard was given: every array task "
        f"would process every item; add --shard auto (or --shard {ALL} to do so on purpose)"
    )


def describe(specs: Sequence[ShardSpec]) -> str:
    parts = []
    for spec in specs:
        if isinstance(spec, HashShard):
            parts.append(f"hash {spec.index}/{spec.count}")
        elif isinstance(spec, SegmentShard):
            parts.append(f"segment {spec.index}/{spec.count}")
        else:
            parts.append(f"index {','.join(map(str, spec.indices()))}/{spec.shard_num}")
    return " > ".join(parts) if parts else "all"


def overlap_class(specs: Sequence[ShardSpec]) -> tuple[str, list[int], int]:
    """(way of sharding, the run's indices in it, how many there are): two runs of one way
    of sharding with disjoint indices have disjoint items; any other two may share items.

    The way is every spec but the last, and the last one's kind and count (specs that keep
    everything change nothing and are left out).
    """
    kept = [spec for spec in specs if not spec.keeps_all]
    if not kept:
        return ALL, [0], 1
    *outer, last = kept
    if isinstance(last, HashShard):
        kind, indices, count = "hash", [last.index], last.count
    elif isinstance(last, SegmentShard):
        kind, indices, count = f"segment of {last.manifest}", [last.index], last.count
    else:
        kind, indices, count = "index", last.indices(), last.shard_num
    return f"{describe(outer)} > {kind} /{count}", indices, count
