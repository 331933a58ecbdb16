"""Listings of output folders for done checks, refusing folders reached through links
that leave the output root."""

from __future__ import annotations

import os

from dispatcher.outputs.paths import is_inside


class ListingIndex:
    """Lists output directories, refusing any reached through a link that leaves `root`.

    A directory that does not exist lists as empty; nothing is created. A directory reached
    through a symlink that leads outside the root also lists as empty, so nothing outside
    the root can make an item count as done. Callers keep the listings they need; only
    the confinement of each directory (and of its parents) is remembered here.
    """

    def __init__(self, root: str) -> None:
        self._root = os.path.normpath(root)
        self._real_root = os.path.realpath(root)
        self._confined: dict[str, bool] = {}

    def _is_confined(self, directory: str) -> bool:
        known = self._confined.get(directory)
        if known is not None:
            return known
        if directory == self._root:
            result = True
        else:
            parent = os.path.dirname(directory)
            if parent != directory and is_inside(self._root, parent):
                # Inside the root by name: confined if its parent is and it is no symlink.
                result = self._is_confined(parent) and not os.path.islink(directory)
            else:
                result = is_inside(self._real_root, os.path.realpath(directory))
        self._confined[directory] = result
        return result

    def names(self, directory: str) -> frozenset[str]:
        """The names in `directory`; empty when it is missing, unreadable or not confined."""
        try:
            listing = frozenset(os.listdir(directory or "."))
        except OSError:
            return frozenset()
        if listing and not self._is_confined(os.path.normpath(directory)):
            return frozenset()
        return listing
