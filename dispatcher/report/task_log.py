"""The task's own logger: `dispatcher.get_logger()` in task code.

Its lines go to stderr as they are (no `dispatch:` prefix), beside the progress display
so they never tear a bar, and into `task.log` beside the run's `run.json`, each with its
time, level and process id. In an `mp` worker the stderr side goes to the parent, which
writes it beside its display (`backbones/mp/worker.py` forwards the worker's whole
stdout and stderr, `print()` included); the file side is appended to directly, by every
worker and Ray actor (`keep_run_log`).
"""

from __future__ import annotations

import logging
import os

from dispatcher.report.log import StderrHandler

TASK_LOGGER = "dispatcher.task"
LOG_NAME = "task.log"


class _Bare(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.bare = True
        return True


def get_logger() -> logging.Logger:
    """The logger for task code: lines beside the progress display and in the run's
    `task.log` (`logger.info("...")`, `logger.warning("...")`)."""
    task_logger = logging.getLogger(TASK_LOGGER)
    if not any(isinstance(h, StderrHandler) for h in task_logger.handlers):
        handler = StderrHandler()
        handler.addFilter(_Bare())
        task_logger.addHandler(handler)
        task_logger.setLevel(logging.INFO)
        task_logger.propagate = False
    return task_logger


def open_run_log(run_dir: str) -> logging.Handler:
    """Add the run's `task.log` to the task logger (until `close_run_log`)."""
    handler = logging.FileHandler(os.path.join(run_dir, LOG_NAME), encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(message)s"))
    get_logger().addHandler(handler)
    return handler


def keep_run_log(run_dir: str | None) -> None:
    """In a worker or an actor: the task logger writes to the run's `task.log` too (a
    forked worker already does, with its parent's handler; a spawned one or a Ray actor
    on another node opens it here, where the log folder is shared)."""
    if run_dir is None or not os.path.isdir(run_dir):
        return
    path = os.path.abspath(os.path.join(run_dir, LOG_NAME))
    for handler in get_logger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == path:
            return
    open_run_log(run_dir)


def close_run_log(handler: logging.Handler) -> None:
    get_logger().removeHandler(handler)
    handler.close()
