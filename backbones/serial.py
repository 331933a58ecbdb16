"""`serial`: every item in this process, one after another; breakpoints and pdb work."""

from __future__ import annotations

import contextlib
import traceback

from backbones.base import Backbone
from dispatcher.execution import error_line, run_one
from dispatcher.report import Reporter
from dispatcher.signals import GraceExpired, StopSignal
from dispatcher.task import Item, Task


class SerialBackbone(Backbone):
    name = "serial"
    summary = "In-process loop, one item at a time: for debugging (pdb and breakpoints work)."

    def run(self, task: Task, items: list[Item], reporter: Reporter, stop: StopSignal) -> None:
        if not items:
            return
        # After a signal, the item in flight gets the grace period; then GraceExpired is
        # raised inside it, its staged outputs are removed, and it counts as not run.
        stop.interrupt_in_place()
        try:
            try:
                task.setup()
            except Exception as exc:
                reporter.abort(f"task setup failed: {error_line(exc)}", traceback.format_exc())
                return
            try:
                for item in items:
                    if stop.is_set():
                        break
                    outcome = run_one(task, item)
                    reporter.record_outcome(outcome)
            except GraceExpired:
                pass
            finally:
                with contextlib.suppress(GraceExpired):
                    try:
                        task.teardown()
                    except Exception as exc:
                        reporter.note(f"task teardown failed: {error_line(exc)}")
        except GraceExpired:
            pass
        finally:
            stop.cancel_interrupt()
