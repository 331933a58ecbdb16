"""Backbone names, as engine code and plugins have imported them; defined in `dispatcher/engines.py`."""

from dispatcher.engines import (
    AUTO,
    BUILTIN,
    ENTRY_POINT_GROUP,
    auto_choice,
    known_names,
    load,
    resolve,
)

__all__ = ["AUTO", "BUILTIN", "ENTRY_POINT_GROUP", "auto_choice", "known_names", "load", "resolve"]
