"""`dispatcher.run(...)`: one run from Python, the same run the command line makes.

The arguments become the runner's request; the mixin and the options then go through the
same layers, coercion and checks as `--mixin` and the command line's options, so a
notebook or a pipeline gets the same errors, outputs and run record as `dispatch`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

from dispatcher.errors import UsageError
from dispatcher.report.results import RunResult

TaskRef = type | str | tuple[str, str]
"""A Task subclass, `"path/to/file.py:ClassName"`, or `(file, class name)`."""


def run(
    task: TaskRef,
    mixin: Mapping[str, Any] | None = None,
    *,
    backbone: str = "auto",
    options: Mapping[str, Any] | None = None,
    shard: str | None = None,
    shard_mode: str = "hash",
    force: bool = False,
    rows_per_item: int | None = None,
    manifest: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_failures: int | None = None,
    keep_going: bool = False,
    log_dir: str | os.PathLike[str] = "dispatch-logs",
    grace: float = 10.0,
    progress_interval: float = 60.0,
    cfg: str | os.PathLike[str] | None = None,
    mixin_cfg: str | os.PathLike[str] | None = None,
    plan_only: bool = False,
    keep_outcomes: bool = True,
) -> RunResult:
    """Run `task` over its items, as `dispatch` would; configuration errors raise UsageError.

    `mixin` fills placeholders (nested or dotted keys) above `mixin_cfg` and `cfg`'s
    `mixin:`, like `--mixin`. `options` holds task and backbone options by dest or
    spelling (`{"num_process": 2}`, `{"--num-process": 2}`). `shard` is `"I/N"`, `"auto"`
    or `"all"`; with `manifest` (a file `dispatch manifest` wrote), `"I/N"` is its segment I,
    read instead of walking the input. SIGINT/SIGTERM stop the run gracefully only when it is called from the
    main thread, where signal handlers can be installed; from another thread it runs
    without them. `keep_outcomes=False` keeps only the counts (runs of millions of items).
    """
    from dispatcher.runner import execute as runner
    from dispatcher.runner.request import Request

    request = Request(
        backbone=backbone,
        mixin_values=_mixin_values(mixin),
        options=dict(options or {}),
        shard=shard,
        shard_mode=shard_mode,
        force=force,
        rows_per_item=rows_per_item,
        manifest=os.fspath(manifest) if manifest is not None else None,
        limit=limit,
        max_failures=max_failures,
        keep_going=keep_going,
        log_dir=os.fspath(log_dir),
        grace=grace,
        progress_interval=progress_interval,
        cfg=os.fspath(cfg) if cfg is not None else None,
        mixin_cfg=os.fspath(mixin_cfg) if mixin_cfg is not None else None,
        plan_only=plan_only,
        keep_outcomes=keep_outcomes,
    )
    request.given = {
        name
        for name, default in (
            ("backbone", "auto"),
            ("shard", None),
            ("shard_mode", "hash"),
            ("rows_per_item", None),
            ("log_dir", "dispatch-logs"),
        )
        if getattr(request, name) != default
    }
    if isinstance(task, type):
        request.task_cls = task_class_by_name(task)
    else:
        request.task_file, request.task_class = _task_place(task)
    problems = request.problems()
    if problems:
        raise UsageError(*problems)
    # A replayed `cfg` runs in the folder it was printed in (`printed_folder.py`); the
    # caller's working directory is its own again afterwards.
    here = os.getcwd()
    try:
        return runner.execute(request)
    finally:
        os.chdir(here)


def _mixin_values(mixin: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if mixin is None:
        return None
    if not isinstance(mixin, Mapping):
        raise UsageError(f"mixin: expected a mapping of placeholder values, got {mixin!r}")
    return dict(mixin)


def _task_place(task: str | tuple[str, str]) -> tuple[str, str | None]:
    """(task file, class name) from `"file.py:Class"`, `(file, class)` or a package folder."""
    if isinstance(task, tuple) and len(task) == 2:
        return os.fspath(task[0]), str(task[1])
    if isinstance(task, (str, os.PathLike)) and os.path.isdir(task):
        return os.fspath(task), None  # an operator package: no class name
    if isinstance(task, (str, os.PathLike)):
        path, sep, name = os.fspath(task).rpartition(":")
        if sep and path and name:
            return path, name
    raise UsageError(
        f"task: expected a Task subclass, 'path/to/file.py:ClassName' or (file, class), "
        f"got {task!r}"
    )


def task_class_by_name(cls: type) -> type:
    """`cls`, once it is known to be found again by module and name in a worker process.

    Workers rebuild a task by importing its class, so a class defined inside a function
    or one its module does not hold (a notebook cell redefined it) fails here, before
    any work, rather than in every worker.
    """
    from dispatcher.stage import adapter_for

    adapter = adapter_for(cls) if isinstance(cls, type) else None
    if adapter is None:
        raise UsageError(
            f"task: {cls.__name__} is not a task class: subclass dispatcher.Task or "
            "dispatcher.TorchTask"
        )
    if cls.__dict__.get("__dispatch_source__") is not None:
        return adapter.task_class(cls)
    where = f"{cls.__module__}.{cls.__qualname__}"
    found: Any = None
    if "<locals>" not in cls.__qualname__:
        try:
            found = sys.modules.get(cls.__module__) or importlib.import_module(cls.__module__)
            for part in cls.__qualname__.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
    if found is not cls:
        raise UsageError(
            f"task class {where} cannot be imported by that name, so worker processes "
            "cannot rebuild it: define it at the top level of an importable module, or "
            "pass 'path/to/file.py:ClassName'"
        )
    return adapter.task_class(cls)
