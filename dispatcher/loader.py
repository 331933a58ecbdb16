"""Import a task class from a file, under a module name unique to that file's path.

Two task files both called `task.py` never collide in `sys.modules`, and the same file
gets the same name in every process, so tasks and items pickle across any start method.
Sibling modules of the task file are importable; the dispatcher's own packages are
imported first, so a sibling cannot shadow them. A task pickled into a worker is rebuilt
there by `restore_task`, which imports the file again.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
from typing import Any

from dispatcher.errors import UsageError

OWN_PACKAGES = ("dispatcher", "backbones", "templates")
"""This distribution's top-level packages: imported before a task's folder joins sys.path.

By name, not by import statement: the core imports no engine or template (docs/architecture.md).
"""


def module_name_for(path: str) -> str:
    import xxhash

    real = os.path.realpath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(real))[0])
    return f"_dispatch_task_{stem}_{xxhash.xxh64_hexdigest(real.encode())[:12]}"


def load_module(path: str) -> types.ModuleType:
    """Import the task file; every failure becomes a one-line UsageError."""
    if not os.path.exists(path):
        raise UsageError(f"task file not found: {path}")
    if os.path.isdir(path):
        raise UsageError(f"task file {path} is a directory, not a Python file")
    if not path.endswith(".py"):
        raise UsageError(f"task file {path} is not a Python file (.py)")
    name = module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    for package in OWN_PACKAGES:  # in sys.modules before the folder can shadow them
        importlib.import_module(package)

    folder = os.path.dirname(os.path.realpath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise UsageError(f"syntax error in {exc.filename or path}:{exc.lineno}: {exc.msg}") from exc
    except ModuleNotFoundError as exc:
        del sys.modules[name]
        raise UsageError(
            f"task file {path} imports module '{exc.name}', which is not installed or not found"
        ) from exc
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"task file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _task_classes(module: types.ModuleType) -> list[str]:
    from dispatcher.stage import adapter_for

    return sorted(
        n
        for n, obj in vars(module).items()
        if inspect.isclass(obj)
        and obj.__module__ == module.__name__
        and adapter_for(obj) is not None
    )


def load_package_class(path: str) -> type:
    """The task class of the operator package directory `path`, built by its adapter."""
    from dispatcher.stage import adapter_for_path, package_layouts

    adapter = adapter_for_path(path)
    if adapter is None:
        layouts = "; ".join(package_layouts())
        raise UsageError(
            f"{path} is a directory that no adapter runs as an operator package"
            + (f" ({layouts})" if layouts else "")
        )
    return adapter.task_class_for_path(path)


def load_task_class(path: str, class_name: str | None) -> type:
    """The task class run for `class_name` in `path`: the class itself for a task class,
    or the one the adapter that accepts it builds (the adapters decide, not the loader).
    A directory is an operator package: it has no class name."""
    from dispatcher.stage import adapter_for

    if os.path.isdir(path):
        if class_name:
            raise UsageError(
                f"{path} is an operator package directory: it takes no TASK_CLASS "
                f"(got '{class_name}')"
            )
        obj = load_package_class(path)
        if obj.__dict__.get("__dispatch_source__") is None:
            obj.__dispatch_source__ = (os.path.realpath(path), None)
            obj.__dispatch_restore__ = restore_task
        return obj
    if not class_name:
        raise UsageError(f"TASK_CLASS is required after the task file {path}")
    module = load_module(path)
    obj = getattr(module, class_name, None)
    if obj is None:
        found = _task_classes(module)
        listing = ", ".join(found) if found else "none"
        raise UsageError(f"no class '{class_name}' in {path} (task classes there: {listing})")
    adapter = adapter_for(obj) if inspect.isclass(obj) else None
    if adapter is None:
        found = _task_classes(module)
        listing = f" (task classes there: {', '.join(found)})" if found else ""
        raise UsageError(
            f"'{class_name}' in {path} is not a task class: subclass dispatcher.Task or "
            f"dispatcher.TorchTask, or decorate it with a template{listing}"
        )
    obj = adapter.task_class(obj)
    if obj.__dict__.get("__dispatch_source__") is None:
        # How its tasks pickle: the task contract knows no loader, the loader tells it.
        obj.__dispatch_source__ = (os.path.realpath(path), class_name)
        obj.__dispatch_restore__ = restore_task
    return obj


def restore_task(path: str, class_name: str | None, state: dict[str, Any]) -> Any:
    """A task rebuilt in a worker: its class imported again from `path`, then its state."""
    cls = load_task_class(path, class_name)
    task = cls.__new__(cls)
    task.__dict__.update(state)
    return task
