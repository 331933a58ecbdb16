"""The manifest: a plan's items written once, read back one shard at a time.

Every array task of a run walks the whole input to keep its own shard; 1,000 tasks over
10M files are 1,000 walks of one metadata server, all at once. A manifest is the sorted
item list, walked once and written in contiguous shard *segments*, so a task reads only
its segment: one seek and its records, in memory proportional to the shard.

Format (version 1), read with the standard library alone (a CPU array task imports no
pyarrow, invariant 8):

    b"DISPATCH-MANIFEST\\n"       magic
    u32 length, header           JSON: version, made, and what the writer adds (the task,
                                 roots, the configuration's fingerprint)
    records                      per item: u32 length, pickle of (key, payload)
    index                        JSON: {"segments": [[first item, count, offset], ...],
                                 "counts": segment counts it has had, "replans": when}
    trailer                      b"DMINDEX1", u64 index offset, u64 index length

A segment's records are contiguous and in key order, and segments follow each other.
New segments (items found later) are added after the last index with a new index and
trailer, so no earlier segment's bytes move; a reader reads the last trailer. Segment I
is then the same under every count the manifest has had, so a run started as I/N before
segments were added still reads its own items. Payloads
are pickled (a plain task's payload is whatever its `generate_tasks` yields; a template's
is None): a manifest is read by runs of the task that wrote it, from its log folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pickle
import shutil
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dispatcher.errors import UsageError
from dispatcher.items import Item
from dispatcher.outputs import atomic_write

MAGIC = b"DISPATCH-MANIFEST\n"
VERSION = 1
_LENGTH = struct.Struct("<I")
_TRAILER = struct.Struct("<8sQQ")
_TRAILER_MAGIC = b"DMINDEX1"


@dataclass(frozen=True)
class Segment:
    """One shard's items: `count` records from byte `offset`, item numbers from `first`."""

    first: int
    count: int
    offset: int


@dataclass
class Manifest:
    path: str
    header: dict[str, Any]
    segments: list[Segment]
    counts: list[int] = field(default_factory=list)
    """The segment counts it has had: the one it was written with, then one per replan."""
    replans: list[str] = field(default_factory=list)
    """When segments were added (ISO times), in order."""

    def __post_init__(self) -> None:
        self.counts = self.counts or [len(self.segments)]

    @property
    def items(self) -> int:
        return sum(segment.count for segment in self.segments)

    def counts_text(self) -> str:
        """How many segments it has, and how it came to have them (for messages)."""
        if len(self.counts) == 1:
            return f"{len(self.segments)} segments"
        grown = ", then ".join(map(str, self.counts[1:]))
        return (
            f"{len(self.segments)} segments (made with {self.counts[0]}, then {grown} by --replan)"
        )


FINGERPRINTED = ("task_file", "task_class", "task", "mixin", "rows_per_item")
"""What decides a run's items: a run whose configuration differs here has other items."""


def fingerprint(config: dict[str, Any]) -> str:
    """The configuration's fingerprint, as a manifest records it."""
    import xxhash

    decisive = {key: config.get(key) for key in FINGERPRINTED}
    text = json.dumps(decisive, sort_keys=True, default=str)
    return xxhash.xxh64_hexdigest(text.encode("utf-8"))


def run_problems(manifest: Manifest, config: dict[str, Any], roots: list[str]) -> list[str]:
    """Why a run of `config` over output `roots` cannot read its items from `manifest`."""
    head, where = manifest.header, f"--manifest {manifest.path}"
    if head.get("fingerprint") != fingerprint(config):
        return [
            f"{where} was made for another configuration of the task (its task, options or "
            "placeholders differ): make it again with this command (dispatch manifest)"
        ]
    if head.get("output_roots") != roots:
        return [f"{where} was made for the outputs {head.get('output_roots')}, not {roots}"]
    return []


def cut(count: int, parts: int, groups: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """(first, count) of `parts` contiguous runs over `count` items, sizes within one of
    each other, the larger first.

    With `groups` (each item's group, as `ItemSource.shard_groups` names it: the file of a
    row range), a run ends only where a group does, so a group stays in one segment: each
    cut moves forward to the next group's start (runs then differ by up to a group).
    """
    size, extra = divmod(count, parts)
    runs, first = [], 0
    for i in range(parts):
        n = size + (i < extra)
        runs.append((first, n))
        first += n
    if groups is None:
        return runs
    ends = [first + n for first, n in runs]
    start, whole = 0, []
    for end in ends:
        end = max(end, start)
        while 0 < end < count and groups[end] == groups[end - 1]:
            end += 1
        whole.append((start, end - start))
        start = end
    return whole


def _write_records(
    fh: BinaryIO, items: Iterator[Item], runs: list[tuple[int, int]]
) -> list[Segment]:
    segments = []
    for first, n in runs:
        segments.append(Segment(first, n, fh.tell()))
        for _ in range(n):
            try:
                item = next(items)
            except StopIteration:
                raise ValueError(
                    f"fewer items than the {runs[-1][0] + runs[-1][1]} announced"
                ) from None
            try:
                data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise UsageError(
                    f"manifest: an item cannot be written to a manifest ({item[0]!r}: {exc}): "
                    "make the task's items picklable, or give dispatch submit --no-manifest "
                    "(each array task then walks)"
                ) from None
            fh.write(_LENGTH.pack(len(data)))
            fh.write(data)
    if next(items, None) is not None:
        raise ValueError("more items than announced")
    return segments


def _write_index(
    fh: BinaryIO, segments: list[Segment], counts: list[int], replans: list[str]
) -> None:
    offset = fh.tell()
    index = json.dumps(
        {
            "segments": [[s.first, s.count, s.offset] for s in segments],
            "counts": counts,
            "replans": replans,
        }
    )
    data = index.encode("utf-8")
    fh.write(data)
    fh.write(_TRAILER.pack(_TRAILER_MAGIC, offset, len(data)))


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_manifest(
    path: str,
    items: Iterable[Item],
    count: int,
    shards: int,
    header: dict[str, Any],
    groups: Sequence[str] | None = None,
) -> Manifest:
    """Write `count` items (in key order, streamed: a generator is never held whole) as
    `shards` segments (`groups`: see `cut`); the file appears whole or not at all."""
    if shards < 1:
        raise ValueError("a manifest has at least one segment")
    head = {**header, "version": VERSION, "made": _now()}
    data = json.dumps(head).encode("utf-8")
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(MAGIC)
        fh.write(_LENGTH.pack(len(data)))
        fh.write(data)
        segments = _write_records(fh, iter(items), cut(count, shards, groups))
        _write_index(fh, segments, [shards], [])
    return Manifest(path, head, segments)


def add_segments(
    manifest: Manifest,
    items: Iterable[Item],
    count: int,
    shards: int,
    groups: Sequence[str] | None = None,
) -> Manifest:
    """`manifest` with `count` more items (found since it was made) as `shards` new
    segments after its own, whose items and bytes stay where they are. Written to a copy
    that replaces the file whole."""
    start = manifest.items
    runs = [(start + first, n) for first, n in cut(count, shards, groups)]
    segments = list(manifest.segments)
    counts = [*manifest.counts, len(segments) + shards]
    replans = [*manifest.replans, _now()]
    with atomic_write(manifest.path) as tmp:
        shutil.copyfile(manifest.path, tmp)
        with open(tmp, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            segments += _write_records(fh, iter(items), runs)
            _write_index(fh, segments, counts, replans)
    return Manifest(manifest.path, manifest.header, segments, counts, replans)


@contextlib.contextmanager
def replanning(path: str) -> Iterator[None]:
    """Held while segments are added to the manifest at `path` (`FILE.lock` beside it: the
    file itself is replaced whole, so its inode cannot be the lock). A second replan waits,
    then reads the file again and finds the first one's segments."""
    import fcntl

    with open(f"{path}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_manifest(path: str) -> Manifest:
    """The header and segments of the manifest at `path` (no record is read)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise UsageError(f"--manifest {path}: not a dispatch manifest")
            (length,) = _LENGTH.unpack(_exactly(fh, _LENGTH.size, path))
            header = json.loads(_exactly(fh, length, path))
            if header.get("version") != VERSION:
                raise UsageError(
                    f"--manifest {path}: version {header.get('version')} is not the "
                    f"{VERSION} this dispatcher reads: make it again"
                )
            fh.seek(-_TRAILER.size, os.SEEK_END)
            mark, offset, size = _TRAILER.unpack(_exactly(fh, _TRAILER.size, path))
            if mark != _TRAILER_MAGIC:
                raise UsageError(
                    f"--manifest {path}: cut short (no index at its end): make it again"
                )
            fh.seek(offset)
            index = json.loads(_exactly(fh, size, path))
    except OSError as exc:
        raise UsageError(f"--manifest {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSON that is not
        raise UsageError(f"--manifest {path}: damaged ({exc})") from None
    segments = [Segment(*entry) for entry in index["segments"]]
    return Manifest(path, header, segments, index.get("counts", []), index.get("replans", []))


def read_segment(manifest: Manifest, number: int) -> list[Item]:
    """The items of segment `number`: a seek and its records only."""
    segment = manifest.segments[number]
    items: list[Item] = []
    with open(manifest.path, "rb") as fh:
        fh.seek(segment.offset)
        for _ in range(segment.count):
            (length,) = _LENGTH.unpack(_exactly(fh, _LENGTH.size, manifest.path))
            items.append(pickle.loads(_exactly(fh, length, manifest.path)))
    return items


def read_items(manifest: Manifest) -> list[Item]:
    """Every segment's items, in segment order (a run without --shard, status, a replan)."""
    return [
        item for number in range(len(manifest.segments)) for item in read_segment(manifest, number)
    ]


def _exactly(fh: BinaryIO, size: int, path: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise UsageError(f"--manifest {path}: cut short: make it again")
    return data
