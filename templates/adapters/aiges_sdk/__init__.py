"""A minimal stand-in for the `aiges` SDK, for wrapper files run where it is not installed.

The real SDK (aiges on PyPI) pulls gradio, flask and grpc; a wrapper file needs only its
classes. `install()` appends a finder at the end of `sys.meta_path`: an installed `aiges`
is always found first, and the stand-in (the `aiges/` folder here: `aiges.sdk`,
`aiges.dto`, `aiges.core.types`, `aiges.utils.log`) is served only to code imported or
called from a task file the dispatcher loaded (its module name says so), so nothing else
in the process sees a fake `aiges`.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TASK_MODULE_PREFIX = "_dispatch_task_"
"""How the loader names the modules of task files (`dispatcher.loader.module_name_for`)."""


def _from_task_code() -> bool:
    """Whether a task file's module is on the stack (importing, or running, wrapper code)."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith(TASK_MODULE_PREFIX):
            return True
        frame = frame.f_back
    return False


class StandInFinder:
    """Finds the top-level `aiges` in this folder; its submodules follow its `__path__`."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != "aiges" or not _from_task_code():
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [HERE])


def install() -> None:
    """Make the stand-in available to task files (idempotent; last in `sys.meta_path`)."""
    if StandInFinder not in sys.meta_path:
        sys.meta_path.append(StandInFinder)


def is_stand_in(module: ModuleType) -> bool:
    return os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or "")).startswith(HERE)
