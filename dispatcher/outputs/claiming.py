"""Holding an item's claim for a block: one item (`Claimed`) or a batch (`claimed_all`),
the leftovers of an attempt that died holding it removed first."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from dispatcher.outputs.claims import Claim, held_for_batch, hold_all
from dispatcher.outputs.leftovers import clear_leftovers
from dispatcher.outputs.paths import make_folder


class DoneElsewhere(Exception):
    """Another run completed the item since the plan looked (this attempt waited for it, or
    came just after): nothing to make."""


class Claimed:
    """Hold the claim of the item whose output is `final` for the block (waiting for a live
    holder); the leftovers of an attempt that died holding it are removed first.

    A class rather than a generator: it is entered once per item, millions of times.
    """

    __slots__ = ("final", "_own")

    def __init__(self, final: str) -> None:
        self.final = final
        self._own: Claim | None = None

    def __enter__(self) -> Claim:
        final = self.final
        batch = held_for_batch(final)
        if batch is not None:
            return batch  # claimed with its batch (and its leftovers removed then)
        make_folder(os.path.dirname(final))
        claim = Claim(final)
        claim.acquire()
        try:
            if claim.orphaned:
                clear_leftovers(final)
        except BaseException:
            claim.release()
            raise
        self._own = claim
        return claim

    def __exit__(self, *exc: object) -> None:
        claim, self._own = self._own, None
        if claim is not None:
            claim.release()


class _NotClaimed:
    """No claim, for a block of a run alone on its items (`dispatcher.outputs.lease`)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NOT_CLAIMED = _NotClaimed()


def claimed(final: str) -> Claimed:
    """The claim of the item whose output is `final`, held for a `with` block."""
    return Claimed(final)


@contextlib.contextmanager
def claimed_all(finals: Sequence[str]) -> Iterator[None]:
    """Hold the claims of several items for the block (a batch written by one call)."""
    for final in finals:
        make_folder(os.path.dirname(final))
    with hold_all(finals) as claims:
        for claim in claims:
            if claim.orphaned:
                clear_leftovers(claim.final)
        yield
