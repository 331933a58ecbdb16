"""The template item source where the input or the output root is in an object store.

Items come from one paginated listing of the input prefix (the modes' own filters over
object keys), and each item's input is downloaded to local scratch for `process` and
removed after the item (a task with `input_as_url = True` gets the URL instead). Done
checks read one paginated listing of the output prefix; outputs are staged locally and
committed by `dispatcher.outputs.objects` (a whole upload, or the folder protocol), which
never leaves a partial object at a final key. A store has no byte-range locks: no lease,
and every item's commit is conditional instead of claimed. A local side of a mixed pair
(a local input, a bucket output) works as it does in `TemplateItems`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import UsageError
from dispatcher.items import Item
from dispatcher.outputs import DoneElsewhere, OutputOutsideRoot, unsafe_reason
from dispatcher.outputs.objects import (
    COMPLETE_NAME,
    ObjectExists,
    StagedObject,
    StagedObjectFolder,
    abandoned_claims,
    abandoned_leftovers,
    abandoned_uploads,
    remove_object_leftovers,
)
from dispatcher.storage import scratch, urls
from dispatcher.storage.listing import Listed, folders_of, list_prefix
from templates.items import TemplateItems
from templates.output_modes import (
    Finish,
    OutputMode,
    OutputPath,
    OutputSameFormat,
    OutputSubfolder,
    OutputWithExtension,
)


@dataclass
class ObjectTemplateItems(TemplateItems):
    """A template task's items and outputs with a root in an object store."""

    download: bool = True
    """Hand `process` a local copy of each input (False: its URL)."""

    @property
    def input_in_store(self) -> bool:
        return urls.is_url(self.input_root)

    @property
    def output_in_store(self) -> bool:
        return urls.is_url(self.output_root)

    def _input_problems(self) -> list[str]:
        # A store root itself is checked by the runner (one small LIST, before any work).
        if not self.input_in_store:
            return super()._input_problems()
        if self.input_mode.listed_items([]) is not None:
            return []
        return [
            f"mixin 'input': input mode {type(self.input_mode).__name__} reads local files "
            f"to find its items; {self.input_value} is in an object store (use a walked "
            "mode: InputByExtensions, InputByGlob, InputByDepth)"
        ]

    def _output_problems(self) -> list[str]:
        if not self.output_in_store:
            return super()._output_problems()
        if type(self.output_mode) in _STORE_OUTPUTS:
            return []
        return [
            f"mixin 'output': output mode {type(self.output_mode).__name__} cannot commit "
            f"to an object store ({', '.join(m.__name__ for m in _STORE_OUTPUTS)} can)"
        ]

    @property
    def trusted_keys(self) -> bool:
        # An object key may hold `..` or start with `/`: such an item runs and fails.
        return not self.input_in_store and super().trusted_keys

    @property
    def read_root(self) -> str:
        return self.input_root if self.input_in_store else super().read_root

    def items(self) -> list[Item]:
        if not self.input_in_store:
            return super().items()
        found = self.input_mode.listed_items(list(list_prefix(self.input_root)))
        if found is None:
            raise UsageError(*self.root_problems())
        self.__dict__["_groups"] = None
        return found

    def payload(self, key: str, payload: Any) -> dict[str, Any]:
        kwargs = super().payload(key, payload)
        if self.input_in_store and self.download and isinstance(kwargs.get("input"), str):
            url = kwargs["input"]
            kwargs["input"] = scratch.download(url, scratch.input_path(key, url))
        return kwargs

    # --- done checks and leftovers: one listing of the output prefix ----------------------

    def _listings(self) -> dict[str, frozenset[str]]:
        if not self.output_in_store:
            return super()._listings()
        folders = self.__dict__.pop("_only", None)
        if folders is None:
            listed = list_prefix(self.output_root)
        else:  # a segment's items: the prefixes of their folders, every other left unlisted
            listed = {}
            for folder in folders:
                below = list_prefix(urls.join(self.output_root, folder))
                listed.update({f"{folder}/{rel}": seen for rel, seen in below.items()})
        self.__dict__["_listed"] = listed
        return _Folders(folders_of(listed))

    def narrow_listings(self, items: Sequence[Item]) -> None:
        """The outputs of a store's three output modes lie below their key's folder: the
        done check of `items` lists the fewest folders that hold all of theirs."""
        if self.output_in_store:
            folders = {key.rpartition("/")[0] for key, _ in items}
            if "" not in folders:
                self.__dict__["_only"] = outermost(folders)

    def _done_paths(self, output: OutputMode, finish: Finish, key: str) -> list[str]:
        paths = output.done_paths(finish, key)
        if self.output_in_store and isinstance(output, OutputSubfolder):
            # A prefix "exists" with its first member: the folder's own done path is the
            # marker its commit writes last.
            return [f"{p}/{COMPLETE_NAME}" if p == key else p for p in paths]
        return paths

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        if not self.output_in_store:
            return super().leftovers(items, found)
        self.__dict__.pop("_listings", None)
        listed: dict[str, Listed] = self.__dict__.pop("_listed", {})
        root = self.output_root
        gone = abandoned_leftovers(listed) + abandoned_claims(root, listed)
        return [urls.join(root, rel) for rel in gone] + abandoned_uploads(root)

    def forget_listings(self) -> None:
        super().forget_listings()
        self.__dict__.pop("_listed", None)

    def remove_leftovers(self, leftovers: Sequence[str]) -> int:
        if not self.output_in_store:
            return super().remove_leftovers(leftovers)
        return remove_object_leftovers(self.output_root, leftovers)

    # --- outputs ----------------------------------------------------------------------------

    def staged(self, key: str, remake: bool = False) -> Any:
        staged = StagedObjectItem(self, key, remake) if self.output_in_store else None
        staged = staged or super().staged(key, remake)
        if not (self.input_in_store and self.download):
            return staged
        return _Downloaded(staged, os.path.dirname(scratch.input_path(key, "x")))

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        if self.output_in_store:
            return contextlib.nullcontext()  # each commit is conditional on its own
        return super().claim_all(keys)

    def clear_abandoned(self, key: str) -> None:
        if not self.output_in_store:
            super().clear_abandoned(key)

    def lease(self, roots, overlap, note, stopping):  # type: ignore[no-untyped-def]
        return None if self.output_in_store else super().lease(roots, overlap, note, stopping)

    def is_done(self, key: str) -> bool:
        if not self.output_in_store:
            return super().is_done(key)
        listings = self.__dict__.get("_listings") or self._listings()
        return next(self._done_each([(key, None)], listings))

    def final_url(self, key: str) -> str:
        reason = unsafe_reason(key)
        if reason:
            raise OutputOutsideRoot(reason.replace("output path", "item path", 1))
        return urls.join(self.output_root, self.output_mode.relative_final(key))


_STORE_OUTPUTS = (OutputWithExtension, OutputSameFormat, OutputSubfolder)


def outermost(folders: set[str]) -> list[str]:
    """The folders of `folders` that lie in no other of them, sorted."""
    kept: list[str] = []
    for folder in sorted(folders):  # an ancestor sorts right before what it holds
        if not kept or not folder.startswith(kept[-1] + "/"):
            kept.append(folder)
    return kept


class _Folders(dict):
    """Relative folder -> names in it, from one listing; a folder not listed is empty."""

    def __missing__(self, folder: str) -> frozenset[str]:
        return frozenset()


class _Downloaded:
    """An item's staged outputs; its downloaded input (`folder`, wherever it was loaded)
    is removed when the block ends."""

    __slots__ = ("inner", "folder")

    def __init__(self, inner: Any, folder: str) -> None:
        self.inner = inner
        self.folder = folder

    def __enter__(self) -> Any:
        try:
            return self.inner.__enter__()
        except BaseException:
            self._forget()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self.inner.__exit__(*exc)
        finally:
            self._forget()

    def _forget(self) -> None:
        scratch.remove(self.folder)


class StagedObjectItem:
    """One item's outputs bound for the store: staged locally, committed on success.

    Without `remake`, a commit finds the item made since the plan looked (a conditional
    upload refused, or a complete folder under the claim) and counts it made elsewhere."""

    __slots__ = ("source", "key", "remake", "_stage")

    def __init__(self, source: ObjectTemplateItems, key: str, remake: bool) -> None:
        self.source = source
        self.key = key
        self.remake = remake
        self._stage: Any = None

    def __enter__(self) -> dict[str, Any]:
        source, key = self.source, self.key
        final = source.final_url(key)
        output = source.output_mode
        if not isinstance(output, OutputSubfolder):
            stage = self._stage = StagedObject(final, create=not self.remake)
            return {"output": OutputPath(stage.__enter__())}
        done = [p[len(key) + 1 :] for p in output.done_paths(source.finish, key) if p != key]
        files = output.files
        stage = self._stage = StagedObjectFolder(
            final,
            required=list(files.values()),
            done_members=done,
            complete_marker=key in output.done_paths(source.finish, key),
            remake=self.remake,
        )
        folder = stage.__enter__()
        outputs: dict[str, Any] = {"output": OutputPath(folder)}
        for name, rel in files.items():
            path = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            outputs[f"output_{name}"] = OutputPath(path)
        return outputs

    def __exit__(self, *exc: Any) -> None:
        stage, self._stage = self._stage, None
        if stage is None:
            return
        try:
            stage.__exit__(*exc)
        except ObjectExists as exists:
            raise DoneElsewhere(f"{self.key} was completed by another run") from exists
