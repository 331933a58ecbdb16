"""What an item's commit can refuse, whatever the storage."""

from __future__ import annotations


class MissingOutput(FileNotFoundError):
    """A task returned without writing an output it declared."""


class OutputConflict(OSError):
    """Something that is not an earlier output of the same kind sits at a final path."""
