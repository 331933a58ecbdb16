"""The Ray actor: one stage, set up once, running the chunks of items the driver sends.

It lives in a Ray worker process, on any node of the cluster. It runs items exactly as an
`mp` worker does (`run_item`, or `run_batch` for a batched stage) and commits their outputs
itself, through the stage's staging and claims, so outputs must be on storage every node
sees. Only what is not a plain success travels back. `halt` runs beside a chunk (its own
concurrency group) and ends the chunk after the item in hand.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from dispatcher.engines import (
    ControlFlow,
    Outcome,
    Stage,
    StageFailed,
    error_line,
    keep_run_log,
    run_batch,
    run_item,
)

Report = tuple[int, bool, str | None, str | None, bool]
"""(item number, ok, error, traceback, malformed) of an item that is not a plain success;
ok with no error: its outputs were made elsewhere (another run committed them first)."""
Progress = tuple[int, float, list[Report], tuple[str, str] | None]
"""(items run since the last progress, seconds they took, the reports among them, a
StageFailed's (error, traceback))."""


def _report(seq: int, outcome: Outcome) -> Report | None:
    if not outcome.ok:
        return (seq, False, outcome.error, outcome.traceback, outcome.malformed)
    if outcome.elsewhere:
        return (seq, True, None, None, False)
    return None


class StageActor:
    """Made remote by `actor_class()`: `ray.remote` is applied only once ray is imported."""

    def __init__(self, stage: Stage, workdir: str, device: str | None) -> None:
        self.stage = stage
        self.workdir = workdir
        self.device_name = device
        self.halted = threading.Event()

    def setup(self) -> tuple[str, str] | None:
        """`stage.setup(device)` in the driver's working directory (relative roots name the
        same files on a shared filesystem); (error, traceback) when it fails."""
        if os.path.isdir(self.workdir):
            os.chdir(self.workdir)
        keep_run_log(self.stage.run_dir)
        try:
            device = None
            if self.stage.uses_device:
                from backbones.torch import device as torch_device

                device = torch_device.activate(torch_device.resolve(self.device_name or "cpu"))
            self.stage.setup(device)
        except ControlFlow:
            raise
        except BaseException as exc:  # a task's sys.exit() too: reported, not a silent death
            return (error_line(exc), traceback.format_exc())
        return None

    def run_chunk(self, alone: bool, chunk: list[tuple[int, Any]]) -> Iterator[Progress]:
        """Run the chunk's items in order until done or halted (a generator: called with
        `num_returns="streaming"`). Yields progress after each item that is not a plain
        success, and once at the end; so when the actor dies, the driver knows that every
        item it was not told about succeeded (and is done) or was in flight or not begun."""
        self.stage.work_alone(alone)
        start = time.perf_counter()
        ran = 0
        try:
            if self.stage.batched:
                if chunk and not self.halted.is_set():
                    outcomes = run_batch(self.stage, [item for _, item in chunk])
                    reports = [_report(seq, o) for (seq, _), o in zip(chunk, outcomes, strict=True)]
                    ran = len(chunk)
                    yield (ran, time.perf_counter() - start, [r for r in reports if r], None)
                    return
            else:
                for seq, item in chunk:
                    if self.halted.is_set():
                        break
                    report = _report(seq, run_item(self.stage, item))
                    ran += 1
                    if report is not None:
                        yield (ran, time.perf_counter() - start, [report], None)
                        ran, start = 0, time.perf_counter()
        except StageFailed as exc:  # nothing can compute here (a model that cannot load)
            yield (ran, time.perf_counter() - start, [], (exc.error, exc.tb or ""))
            return
        yield (ran, time.perf_counter() - start, [], None)

    def halt(self) -> None:
        self.halted.set()

    def teardown(self) -> str | None:
        try:
            self.stage.teardown()
        except ControlFlow:
            raise
        except BaseException as exc:
            return error_line(exc)
        return None


FORWARDED = ("AWS_", "DISPATCH_STORAGE_OPTIONS", "DISPATCH_SCRATCH")
"""What the driver's environment tells actors: a store's credentials, endpoint and region
(`AWS_*`), per-root store options and where scratch goes. An actor on a cluster's node
has that node's environment otherwise; the run's own scratch folder is not forwarded
(each node makes its own)."""


def forwarded_env(environ: dict[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name.startswith(FORWARDED) and name != "DISPATCH_SCRATCH_FOLDER"
    }


def actor_class(num_cpus: float, num_gpus: float, env: dict[str, str]) -> Any:
    """`StageActor` as a Ray actor class: one chunk at a time, `halt` beside it, the
    driver's `env` set in its process."""
    import ray

    options: dict[str, Any] = {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "max_restarts": 0,
        "max_task_retries": 0,
        "concurrency_groups": {"control": 1},
    }
    if env:
        options["runtime_env"] = {"env_vars": env}
    return ray.remote(**options)(StageActor)
