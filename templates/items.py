"""The template item source: items, done checks and outputs from a task's declared modes.

Built once from the task's filled `mixin` (its modes and roots), so the plan, the workers
and the task's own hooks (`generate_tasks`, `is_executed`) work from the same resolved
values. Keys are paths relative to the input root; done means every output the finish
check names is in its folder's listing (one listing per output folder); outputs are
staged, claimed and committed under the output root (`dispatcher.outputs`).
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise, repeat
from operator import itemgetter
from typing import Any

from dispatcher.items import Item, ItemSource
from dispatcher.outputs import (
    Claimed,
    DoneElsewhere,
    ListingIndex,
    OutputOutsideRoot,
    alone_in,
    claimed_all,
    clear_abandoned,
    confine,
    is_staging_name,
    leftover_final,
    unsafe_reason,
)
from dispatcher.storage import urls
from templates.input_modes import InputMode
from templates.output_modes import Finish, FinishWhenAllExist, OutputMode, OutputWithExtension
from templates.shards import HardShard


@dataclass
class TemplateItems(ItemSource):
    """A template task's items and outputs, answered from its declared modes."""

    input_value: str
    """The configured input (after hard-shard substitution), as the user wrote it."""
    input_root: str
    """Absolute folder that item keys are relative to."""
    output_root: str
    """Absolute output root."""
    input_mode: InputMode
    output_mode: OutputMode
    finish: Finish

    @classmethod
    def from_mixin(cls, mixin: Any) -> TemplateItems:
        input_value, output_value = mixin["input"], mixin["output"]
        hard = mixin.get("hard_shard")
        if isinstance(hard, HardShard):
            input_value, output_value = hard.apply(input_value), hard.apply(output_value)
        input_mode: InputMode = mixin["input_mode"]
        input_value, output_value = urls.local(input_value), urls.local(output_value)
        input_root, output_root = _root(input_mode.base_root(input_value)), _root(output_value)
        return cls(
            input_value=input_value,
            input_root=input_root,
            output_root=output_root,
            input_mode=input_mode,
            output_mode=mixin["output_mode"],
            finish=mixin.get("finish") or FinishWhenAllExist(),
        )

    def root_problems(self) -> list[str]:
        """Why the roots cannot be used (checked before any work), input then output."""
        return self._input_problems() + self._output_problems()

    def _input_problems(self) -> list[str]:
        """The input as its mode reads it."""
        return self.input_mode.root_problems(self.input_value, self.input_root)

    def _output_problems(self) -> list[str]:
        """An output root that is no folder."""
        out = self.output_root
        if os.path.exists(out) and not os.path.isdir(out):
            return [f"mixin 'output': output root {out} is not a folder"]
        return []

    @property
    def read_root(self) -> str:
        """What the items are read from (`InputMode.read_root`), absolute."""
        return os.path.abspath(self.input_mode.read_root(self.input_value))

    @property
    def packs_rows(self) -> bool:
        """Items are files of rows whose results the template packs into one part each."""
        return getattr(self.output_mode, "packs_rows", False)

    def items(self) -> list[Item]:
        if self.packs_rows:
            self.__dict__["_groups"] = None
            return self.input_mode.packed_items(self.input_value, self.input_root) or []
        items, groups = self.input_mode.items_with_groups(self.input_value, self.input_root)
        # Kept for the done check of these very items (never pickled to workers), when
        # the groups are in key order: then the plan keeps the list as it is.
        ordered = groups is not None and all(
            a[0] + a[1][-1] < b[0] + b[1][0] for a, b in pairwise(groups)
        )
        self.__dict__["_groups"] = (items, groups) if ordered else None
        return items

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for planned in ("_groups", "_listings", "_listed"):  # the parent's, for its plan
            state.pop(planned, None)
        return state

    @property
    def trusted_keys(self) -> bool:
        """Keys are safe relative paths by construction (found on a filesystem)."""
        return self.input_mode.trusted_keys

    def payload(self, key: str, payload: Any) -> dict[str, Any]:
        """The item's keyword arguments for `process` / `load_data` (its input path...)."""
        return self.input_mode.kwargs(self.input_value, self.input_root, key, payload)

    def describe(self, key: str, payload: Any) -> dict[str, Any]:
        """An item as a failure record shows it (in the parent: nothing is read but its row)."""
        return self.input_mode.describe(self.input_value, self.input_root, key, payload)

    def origin(self) -> str:
        return f"under {self.input_value} (input mode {self.input_mode!r})"

    def key_of(self, kwargs: dict[str, Any]) -> str:
        """The key of the item whose keyword arguments are `kwargs` (the reverse of `payload`)."""
        return self.input_mode.key_of(self.input_value, self.input_root, kwargs)

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        """Whether each item is done, from one listing per output directory (nothing created)."""
        listings = self.__dict__["_listings"] = self._listings()
        output = self.output_mode
        hint = self.__dict__.pop("_groups", None)
        if isinstance(output, OutputWithExtension) and hint is not None and hint[0] is items:
            # Exactly the enumerated items, in walk order (which is key order): answer
            # folder by folder from the walk's own name lists.
            ext = output.ext
            return chain.from_iterable(
                map(listings[prefix[:-1]].__contains__, map(operator.add, names, repeat(ext)))
                for prefix, names in hint[1]
            )
        if isinstance(output, OutputWithExtension):
            done = _done_by_key(items, output.ext, listings)
            if self.trusted_keys:
                return done
            # A listed key that would escape the root is never done: it runs and fails.
            return map(operator.and_, done, map(_is_safe, map(itemgetter(0), items)))
        return self._done_each(items, listings)

    def _done_each(self, items: Sequence[Item], listings: _Listings) -> Iterator[bool]:
        check = None if self.trusted_keys else unsafe_reason
        output, finish = self.output_mode, self.finish
        for key, _ in items:
            if check is not None and check(key):
                yield False  # it runs, and fails with the reason
                continue
            done = True
            for path in self._done_paths(output, finish, key):
                folder, _, name = path.rpartition("/")
                if name not in listings[folder]:
                    done = False
                    break
            yield done

    def _listings(self) -> dict[str, frozenset[str]]:
        """Relative output folder -> the names in it, listed on first use."""
        return _Listings(self.output_root)

    def _done_paths(self, output: OutputMode, finish: Finish, key: str) -> list[str]:
        return output.done_paths(finish, key)

    def final_outputs(self, keys: Sequence[str]) -> Iterable[str] | None:
        """Each key's committed path relative to the output root, for the nesting check."""
        output = self.output_mode
        if isinstance(output, OutputWithExtension):
            # One output can hold another only if some key has the extension before a "/"
            # (`x` and `x.json/y`): one C-level search over all keys says whether any does.
            if output.ext + "/" not in "\n".join(keys):
                return None
            return map(operator.add, keys, repeat(output.ext))
        return map(output.relative_final, keys)

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        """Leftovers of killed attempts in the folders the last done check listed.

        Those are the folders of the items' output files; for folder outputs also the
        folder each item's output sits in (where its staging and retired names lie). Those
        of another shard's items (in `found`, not in `items`) are left to its runs.
        """
        listings = self.__dict__.pop("_listings", None)
        if listings is None:
            return []
        if not isinstance(self.output_mode, OutputWithExtension):
            slash = repeat("/")
            keys = map(itemgetter(0), items)
            for folder in set(map(itemgetter(0), map(str.rpartition, keys, slash))):
                _ = listings[folder]  # listed on first use
        leftovers = []
        for folder, names in listings.items():
            # Most folders hold none: one C-level search decides before any name is parsed.
            if not names or ".dispatch-" not in "\x00".join(names):
                continue
            base = os.path.join(self.output_root, folder) if folder else self.output_root
            leftovers += [os.path.join(base, n) for n in names if is_staging_name(n)]
        if not leftovers or len(found) <= len(items):
            return leftovers
        return self._not_elsewhere(leftovers, items, found)

    def forget_listings(self) -> None:
        self.__dict__.pop("_listings", None)

    def _not_elsewhere(
        self, leftovers: list[str], items: Sequence[Item], found: Sequence[Item]
    ) -> list[str]:
        """The leftovers that are no other shard's: another shard's run, alone on its items,
        holds no claim that would keep its live staging files safe from this one. (Those
        of items no longer found at all are this run's to remove.)"""
        root, relative = self.output_root, self.output_mode.relative_final
        by_final: dict[str, list[str]] = {}
        for path in leftovers:
            folder, name = os.path.split(path)
            final = os.path.relpath(os.path.join(folder, leftover_final(name) or ""), root)
            by_final.setdefault(final.replace(os.sep, "/"), []).append(path)
        mine = {relative(key) for key, _ in items}
        for key, _ in found:
            final = relative(key)
            if final not in mine:
                by_final.pop(final, None)
        return [path for paths in by_final.values() for path in paths]

    def staged(self, key: str, remake: bool = False) -> StagedItem:
        """The item's outputs for `process`, claimed (unless the run is alone on them),
        staged and committed on success."""
        return StagedItem(self, key, remake, alone_in(self.output_root))

    def _final(self, key: str) -> str | None:
        try:
            return self.output_mode.final(self.output_root, key)
        except OutputOutsideRoot:
            return None  # never staged: its item fails with the reason when it runs

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        if alone_in(self.output_root):
            return contextlib.nullcontext()
        return claimed_all([final for final in map(self._final, keys) if final is not None])

    def clear_abandoned(self, key: str) -> None:
        final = self._final(key)
        if final is not None:
            clear_abandoned(final)

    def is_done_at(self, final: str, key: str) -> bool:
        """`is_done`, given the item's confined committed path (one `lstat` for a file)."""
        if isinstance(self.output_mode, OutputWithExtension):
            return os.path.lexists(final)  # its one done path is its committed path
        return self.is_done(key)

    def is_done(self, key: str) -> bool:
        """One item's done check with `os.path` (for `is_executed(**item)` callers).

        Agrees with `done_mask`: an output reached through a folder that resolves outside
        the output root never counts.
        """
        if unsafe_reason(key):
            return False
        try:
            return all(
                os.path.lexists(confine(self.output_root, path))
                for path in self.output_mode.done_paths(self.finish, key)
            )
        except OutputOutsideRoot:
            return False


class StagedItem:
    """One item's outputs for a `with` block: the claim is held from staging to commit, so a
    concurrent run's attempt at the same item waits for it. Once claimed, the item may have
    been completed since the plan looked (by the run waited for, or one that finished just
    before): then nothing is made again (`DoneElsewhere`) unless `remake`. A run `alone` on
    its items (`dispatcher.outputs.lease`) only stages and commits.

    One object, not nested generators: it is entered once per item, millions of times.
    """

    __slots__ = ("source", "key", "remake", "alone", "_claimed", "_stage")

    def __init__(
        self, source: TemplateItems, key: str, remake: bool = False, alone: bool = False
    ) -> None:
        self.source = source
        self.key = key
        self.remake = remake
        self.alone = alone
        self._claimed: Claimed | None = None
        self._stage: Any = None

    def __enter__(self) -> dict[str, Any]:
        source, key = self.source, self.key
        final = source.output_mode.final(source.output_root, key)
        if self.alone:
            # Alone on its items: nobody to wait for, nobody who made it since the plan.
            output = source.output_mode
            fresh = output.final_is_done_path and not self.remake
            stage = self._stage = output.stage_final(final, fresh)
            return stage.__enter__()
        claimed = self._claimed = Claimed(final)
        claim = claimed.__enter__()
        try:
            # A batch written by one call writes every row, so its items are made again.
            if not claim.batch and not self.remake and source.is_done_at(final, key):
                raise DoneElsewhere(f"{key} was completed by another run")
            stage = source.output_mode.stage_final(final)
            outputs = stage.__enter__()
        except BaseException:
            claimed.__exit__(None, None, None)
            raise
        self._stage = stage
        return outputs

    def __exit__(self, *exc: Any) -> None:
        claimed, stage = self._claimed, self._stage
        self._claimed = self._stage = None
        try:
            if stage is not None:
                stage.__exit__(*exc)
        finally:
            if claimed is not None:
                claimed.__exit__(None, None, None)


class _Listings(dict):
    """Relative output folder -> names in it, listed on first use (one listing each)."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.index = ListingIndex(root)

    def __missing__(self, folder: str) -> frozenset[str]:
        if folder and unsafe_reason(folder):
            self[folder] = frozenset()  # never listed: it names no folder inside the root
            return self[folder]
        found = self[folder] = self.index.names(
            os.path.join(self.root, folder) if folder else self.root
        )
        return found


def _done_by_key(items: Sequence[Item], ext: str, listings: _Listings) -> Iterator[bool]:
    """Whether `key + ext` exists, for every item, in C-level iterators (no Python frame
    per item): split each key into folder and name, look the name up in the folder's
    listing."""
    slash = repeat("/")
    folders = map(itemgetter(0), map(str.rpartition, map(itemgetter(0), items), slash))
    names = map(itemgetter(2), map(str.rpartition, map(itemgetter(0), items), slash))
    wanted = map(operator.add, names, repeat(ext))
    return map(operator.contains, map(listings.__getitem__, folders), wanted)


def _root(value: str) -> str:
    """A root as the item source keeps it: a URL in one spelling, a local path absolute."""
    return urls.canonical(value) if urls.is_url(value) else os.path.abspath(value)


def _is_safe(key: str) -> bool:
    return unsafe_reason(key) is None
