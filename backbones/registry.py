"""Backbone names: the built-ins, `auto`, and any installed package's `dispatcher.backbones` entry points.

Built-ins are referenced by module path so that naming one imports nothing heavy.
"""

from __future__ import annotations

import importlib

from backbones.base import Backbone
from dispatcher.errors import UsageError
from dispatcher.task import Task, TorchTask

ENTRY_POINT_GROUP = "dispatcher.backbones"
AUTO = "auto"
BUILTIN: dict[str, str] = {
    "serial": "backbones.serial:SerialBackbone",
    "mp": "backbones.mp:ProcessPoolBackbone",
    "torch": "backbones.torch:TorchBackbone",
}


def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    return [AUTO, *BUILTIN, *sorted(set(_entry_points()) - set(BUILTIN) - {AUTO})]


def load(name: str) -> type[Backbone]:
    """The backbone class registered under `name`; an unknown name lists the known ones."""
    if name in BUILTIN:
        module_name, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    plugin = _entry_points().get(name)
    if plugin is None:
        raise UsageError(f"unknown backbone '{name}' (known: {', '.join(known_names())})")
    try:
        cls = plugin.load()  # type: ignore[attr-defined]
    except Exception as exc:
        raise UsageError(f"backbone '{name}' failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise UsageError(f"backbone '{name}' ({plugin.value}) is not a backbones.Backbone subclass")  # type: ignore[attr-defined]
    return cls


def auto_choice(task_cls: type[Task] | None) -> str:
    """`auto`: a torch task goes to `torch`, any other to `mp`."""
    return "torch" if task_cls is not None and issubclass(task_cls, TorchTask) else "mp"


def resolve(name: str, task_cls: type[Task] | None) -> type[Backbone]:
    cls = load(auto_choice(task_cls) if name == AUTO else name)
    if task_cls is not None:
        reason = cls.incompatibility(task_cls)
        if reason:
            raise UsageError(f"backbone '{cls.name}' cannot run {task_cls.__name__}: {reason}")
    return cls
