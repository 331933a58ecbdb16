"""Starting and releasing `mp` worker processes, and the pool's temporary folder.

Under fork, a new worker inherits the parent's ends of the other workers' pipes; they are
named so the worker closes them (each pipe then reports EOF when the parent goes away).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil
import tempfile
from typing import Any

from backbones.mp import worker as W
from backbones.mp.items import PoolWorker
from dispatcher.engines import Stage, blocked_stop_signals, process_alive

TMP_PREFIX = "dispatch-mp-"
"""The pool's temporary folder (crash logs) is `<tmp>/dispatch-mp-<owner pid>-XXXX`."""


def remove_dead_tmpdirs(tmp: str | None = None) -> None:
    """Remove the temporary folders of pools whose owner process is gone (a SIGKILLed run
    cannot remove its own); the pid in the name says whose it is, on this host."""
    tmp = tmp or tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


class Spawner:
    """Starts worker processes of one start method; cleans up after them and itself."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.method: str = ctx.get_start_method()
        self.numbers = itertools.count()
        self.froze_gc = False
        remove_dead_tmpdirs()
        self.tmpdir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")

    def start(self, stage: Stage, live: list[PoolWorker]) -> PoolWorker:
        """A started worker running `stage` (raises when the process cannot start)."""
        process, conn, state, crash_log = self.launch(
            W.worker_main,
            (stage,),
            [w.conn for w in live],
            W.STATE_SLOTS,
            "dispatch-mp",
            initial=((W.RUNNING, W.IDLE),),
        )
        return PoolWorker(process, conn, state, crash_log)

    def launch(
        self,
        target: Any,
        head: tuple[Any, ...],
        live: list[Any],
        slots: int,
        name: str,
        initial: tuple[tuple[int, float], ...] = (),
    ) -> tuple[Any, Any, Any, str]:
        """Start `target(*head, conn, state, parent pid, inherited fds, crash log)`:
        its process, the parent's end of its pipe, the shared state array (`slots`
        doubles, zero but for `initial`'s (slot, value) pairs) and its crash log path.
        `live` are the pipes of the processes already running, which a forked child must
        close."""
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        state = self.ctx.RawArray("d", slots)
        for slot, value in initial:
            state[slot] = value
        number = next(self.numbers)
        crash_log = os.path.join(self.tmpdir, f"worker-{number}.crash")
        inherited: list[int] = []
        if self.method == "fork":
            inherited = [conn.fileno() for conn in live]
            inherited.append(parent_conn.fileno())
        process = self.ctx.Process(
            target=target,
            args=(*head, child_conn, state, os.getpid(), inherited, crash_log),
            name=f"{name}-{number}",
            daemon=False,  # tasks may start processes of their own
        )
        try:
            self._prepare_start()
            with blocked_stop_signals():
                process.start()
        except Exception:
            parent_conn.close()
            child_conn.close()
            raise
        child_conn.close()
        return process, parent_conn, state, crash_log

    def _prepare_start(self) -> None:
        if self.method == "fork":
            # Objects that exist now (the plan's items, imported modules) are left out of
            # garbage collection: a forked worker then never walks them, and never copies
            # the memory pages it would touch doing so.
            gc.freeze()
            self.froze_gc = True
        else:
            # The resource tracker unblocks signals when it starts; start it before
            # blocking, so the forkserver inherits the block and survives a SIGTERM sent
            # to the whole process group.
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()

    @staticmethod
    def release(w: Any) -> None:
        """Forget a dead worker (anything with `conn`, `process` and `crash_log`): its pipe,
        its process handle (sentinel) and its crash log."""
        with contextlib.suppress(OSError):
            w.conn.close()
        with contextlib.suppress(ValueError):  # still running: left to the garbage collector
            w.process.close()
        with contextlib.suppress(OSError):
            os.remove(w.crash_log)

    def close(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.froze_gc:
            gc.unfreeze()
