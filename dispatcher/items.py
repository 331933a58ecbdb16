"""The item source: the one owner of a task's items and of their outputs.

It says where items come from (enumeration, keys), whether each is done (a listing per
output folder, finish checks) and where each one's outputs go (final paths, staging,
claims, commit, leftovers). The plan asks it; the execution steps and the engines commit
through it; nothing else computes a final path, a done check or a staging name
(`dispatcher.outputs` holds the primitives it builds on). A new storage (an object store,
with its own claim and commit) or a new item granularity (row ranges of a big file) is a
new `ItemSource`, not edits across layers.

Every task style provides one (`Task.item_source()`; templates and operator adapters
their own); its stage holds it (`Stage.source`) and carries it to the workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any

from dispatcher.errors import UsageError
from dispatcher.outputs.lease import RunLease, shard_slot

Item = tuple[str, Any]
"""(key, payload): the key is stable and sortable; the payload is what `payload` turns
into the arguments of the task's work, in the worker."""


class _NoOutputs:
    """The staged outputs of a source that declares none: an empty dict, nothing to commit.

    A plain object rather than a generator: it is entered once per item."""

    __slots__ = ()

    def __enter__(self) -> dict[str, Any]:
        return {}

    def __exit__(self, *exc: Any) -> None:
        return None


NO_OUTPUTS = _NoOutputs()


class ItemSource:
    """Where a stage's items come from, whether each is done, and where its outputs go.

    Built in the parent with its stage and pickled to the workers with it. The defaults
    describe items without declared outputs: never done, nothing staged, nothing left over.
    """

    whole_run: bool = False
    """The one item `items` listed stands for every row the stage's own loader yields."""
    checks_after_load: bool = False
    """Rows are known only once loaded: loaded batches go through `done_after_load`."""

    def items(self) -> Iterable[Item]:
        """Every item, `(key, payload)`, in any order (the plan sorts them by key)."""
        raise NotImplementedError

    def payload(self, key: str, payload: Any) -> Any:
        """What the task's work receives for an item (in the worker)."""
        return payload

    def describe(self, key: str, payload: Any) -> Any:
        """What a failure record shows of an item (in the parent, reading nothing)."""
        return payload if isinstance(payload, dict) else None

    def origin(self) -> str:
        """Where items come from, for the line that says none were found."""
        return ""

    def shard_groups(self, keys: Sequence[str]) -> Sequence[str] | None:
        """For each key, the group a shard keeps whole (the file of a row range); None
        when every item is its own group (`sharding.select`)."""
        return None

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        """For each item, whether it is done; in the parent, before dispatch."""
        return repeat(False, len(items))

    def final_outputs(self, keys: Sequence[str]) -> Iterable[str] | None:
        """Each key's committed path relative to its output root (None: none declared)."""
        return None

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> Iterable[str]:
        """Paths that killed attempts at `items` (this run's) left where the last `done_mask`
        looked; none of another shard's items of `found` (all items, every shard), whose
        run may be alone on them and hold no claim that keeps its live files safe."""
        return ()

    def narrow_listings(self, items: Sequence[Item]) -> None:
        """Say that the next `done_mask` is of `items` alone (a manifest's segment), so a
        source that would list a whole output prefix lists only their folders."""

    def forget_listings(self) -> None:
        """Drop what the last `done_mask` kept for `leftovers`, in a run that will not ask
        for them (a manifest's segment, whose folders may hold other segments' live
        staging)."""

    def remove_leftovers(self, leftovers: Sequence[str]) -> int:
        """Remove what `leftovers` listed, unless a live attempt holds it; how many went."""
        from dispatcher.outputs.leftovers import remove_leftovers

        return remove_leftovers(leftovers)

    def settle(self, pending: Sequence[Item], remake: bool) -> None:
        """Finish, before the first item runs, what a killed run left all but finished
        (a file whose row ranges were all made but not joined); under `remake` (`--force`),
        forget the parts that earlier runs made of the `pending` items. In the parent,
        after the leftovers were removed; never under `--plan`."""

    def staged(self, key: str, remake: bool = False) -> contextlib.AbstractContextManager[Any]:
        """An item's outputs to write, for one `with` block: claimed, staged, committed on
        success (`remake`: even if another run completed the item since the plan)."""
        return NO_OUTPUTS

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """Hold the claims of several items at once (a batch written by one call)."""
        return contextlib.nullcontext()

    def clear_abandoned(self, key: str) -> None:
        """Remove what a killed attempt at `key` left, unless a live run holds it."""

    def lease(
        self,
        roots: Sequence[str],
        overlap: tuple[str, list[int], int],
        note: Callable[[str], None],
        stopping: Callable[[], bool],
    ) -> RunLease | None:
        """The run's lease at its output roots: whether it may commit without per-item
        claims (`dispatcher.outputs.lease`; `overlap`: `sharding.overlap_class`). On a
        local or shared filesystem, lock bytes of a file at each root; a storage without
        such locks returns None (every item is claimed) or brings its own."""
        return RunLease.take(roots, shard_slot(*overlap), note, stopping)

    def done_after_load(self, batch: Any, size: int) -> list[bool] | None:
        """For rows known only once loaded: whether each row of a collated `batch` is
        done (None: no done check). Asked through `plan.pending_rows`, never directly."""
        return None


class TaskItems(ItemSource):
    """A plain task's items: the dicts `generate_tasks` yields, keyed by `item_key`, done
    when `is_executed(**item)` says so. No outputs are declared (a task may write with
    `atomic_write` itself)."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def items(self) -> Iterator[Item]:
        task = self.task
        first = True
        for item in task.generate_tasks():
            if not isinstance(item, dict):
                raise TypeError(f"generate_tasks() must yield dicts, got {type(item).__name__}")
            if first:  # one signature check, before any item runs: a usage error, exit 2
                first = False
                problems = task.item_problems(item)
                if problems:
                    raise UsageError(*problems)
            yield task.item_key(item), item

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        return done_each(self.task.is_executed, items)

    def origin(self) -> str:
        return f"({type(self.task).__name__}.generate_tasks yielded none)"


def done_each(check: Callable[..., Any], items: Sequence[Item]) -> Iterator[bool]:
    """`check(**payload)` of every item, as a bool: a task's own per-item done check."""
    for _, payload in items:
        yield bool(check(**payload))
