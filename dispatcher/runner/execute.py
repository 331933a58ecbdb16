"""One run, start to end: prepare (`dispatcher/runner/preparation.py`), plan, execute, report.

`execute` is what the command line and `dispatcher.run` share; `run` adds the command
line's help and `--print-config` (`dispatcher/runner/helptext.py`).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from dispatcher import sharding, storage
from dispatcher.engines import RunContext, run_engine
from dispatcher.environment import slurm_job
from dispatcher.errors import EXIT_OK, EXIT_SIGINT, UsageError
from dispatcher.execution.steps import is_task_exit
from dispatcher.outputs import (
    forget_folders,
    is_inside,
    records,
    unwritable_reason,
)
from dispatcher.plan import Plan, limited, make_plan, plan_from_manifest
from dispatcher.report.counts import Counts
from dispatcher.report.fail_fast import FailFast
from dispatcher.report.log import logger, note
from dispatcher.report.results import PlanSummary, RunResult
from dispatcher.report.task_log import close_run_log, open_run_log
from dispatcher.runner.preparation import Prepared, prepare
from dispatcher.runner.request import Request
from dispatcher.storage import urls
from dispatcher.task import Task

if TYPE_CHECKING:
    from dispatcher.execution.signals import StopSignal
    from dispatcher.outputs.lease import RunLease
    from dispatcher.report.reporter import Reporter


def _run_dir(request: Request, task: Task, shards: list[sharding.ShardSpec]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = sharding.describe(shards).replace(" ", "").replace("/", "of").replace(">", "-")
    # In a SLURM array task the job and array task ids name the run, so each array task's
    # record is found next to its log (JOB_TASK.out); the process id keeps a requeued task's runs apart.
    job = slurm_job()
    where = f"{job['array_job']}_{job['array_task']}-{os.getpid()}" if job else str(os.getpid())
    base = os.path.join(request.log_dir, type(task).__name__, f"{stamp}-{tag}-{where}")
    # Runs from Python in one process within a second: each keeps its own record.
    run_dir, n = base, 1
    while os.path.exists(run_dir):
        n += 1
        run_dir = f"{base}-{n}"
    return run_dir


def _check_log_dir(log_dir: str, task: Task) -> None:
    """Output roots hold outputs only: refuse a log directory inside one."""
    real_log = os.path.realpath(log_dir)
    for root in task.output_roots():
        if not urls.is_url(root) and is_inside(urls.canonical(root), real_log):
            raise UsageError(
                f"log directory {log_dir} is inside the output root {root}: "
                "pass --log-dir elsewhere (output roots hold outputs only)"
            )


def _open_reporter(
    request: Request, run_dir: str, counts: Counts, record: dict[str, Any]
) -> Reporter:
    """The run's reporter; a log directory it cannot write to is a configuration error."""
    from dispatcher.report.reporter import Reporter

    log_dir = request.log_dir
    try:
        return Reporter(run_dir, counts, record, interval=request.progress_interval)
    except OSError as exc:
        raise UsageError(
            f"cannot write to the log directory {log_dir}: {exc.strerror or exc} "
            f"({exc.filename or run_dir}); pass a writable --log-dir"
        ) from None


def _check_output_roots(task: Task) -> None:
    """Refuse, before any work, output roots that no item could commit into."""
    problems = []
    for root in task.output_roots():
        if urls.is_url(root):
            continue  # a store root was checked with the configuration
        reason = unwritable_reason(urls.local(root))
        if reason is not None:
            problems.append(
                f"mixin 'output': output root {root} cannot be written ({reason}): "
                "choose a folder you can write"
            )
    if problems:
        raise UsageError(*problems)


def _output_roots(task: Task) -> list[str]:
    return [urls.canonical(root) for root in task.output_roots()]


def _config_change(request: Request, task: Task, prepared: Prepared) -> str | None:
    """How this configuration differs from the one of the last run over the same outputs.

    None when they agree, or when no earlier run record for these output roots is found.
    """
    roots = _output_roots(task)
    if not roots:
        return None
    name = type(task).__name__
    paths = [task.provenance_path(root) for root in roots]
    found = records.made_by(paths, roots, os.path.join(request.log_dir, name))
    if found is None:
        return None
    path, earlier = found
    changes = records.config_changes(earlier, prepared.config)
    if not changes:
        return None
    return f"{'; '.join(changes)}; run record {path}"


def run(request: Request) -> int:
    """The command line's run: help and `--print-config` here, the rest through `execute`."""
    if request.help == "task":
        from dispatcher.runner.helptext import task_help

        print(task_help(request))
        return EXIT_OK
    if request.help == "backbone":
        from dispatcher.runner.helptext import backbone_help

        print(backbone_help(request))
        return EXIT_OK
    if request.print_config:
        request.plan_only = True  # nothing runs: no install script either
        prepared = prepare(request)
        from dispatcher.config.layers import config_document

        print(config_document(prepared.config), end="")
        return EXIT_OK
    result = execute(request)
    if result.plan is not None:
        from dispatcher.runner.helptext import print_plan

        print_plan(result.plan)
    return result.exit_code


def _summary(plan: Plan, force: bool) -> PlanSummary:
    return PlanSummary(
        found=plan.found,
        in_shard=plan.in_shard,
        shards=sharding.describe(plan.shards),
        done=plan.done,
        to_run=plan.to_run,
        force=force,
        keys=[key for key, _ in plan.pending],
        duplicates=plan.duplicates,
        duplicate_keys=list(plan.duplicate_keys),
        leftovers=len(plan.leftovers),
        limited_from=plan.limited_from,
    )


def _start_recording(request: Request, prepared: Prepared, plan: Plan, counts: Counts) -> Reporter:
    """The run's record and reporter in a new run folder, and the provenance record at each
    output root, just before the first item runs."""
    task = prepared.task
    _check_log_dir(request.log_dir, task)
    record = {
        "argv": request.argv,
        "cwd": os.getcwd(),
        "config": prepared.config,
        "output_roots": _output_roots(task),
        "counts": counts.to_record(finished=False),
    }
    if plan.duplicates:
        record["duplicate_keys"] = plan.duplicate_keys
    if plan.limited_from is not None:
        record["limited"] = {"limit": request.limit, "pending": plan.limited_from}
    if slurm_job():
        record["slurm"] = slurm_job()
    run_dir = _run_dir(request, task, prepared.shards)
    reporter = _open_reporter(request, run_dir, counts, record)
    reporter.remember_payloads(plan.pending, prepared.stage.source.describe)
    if request.keep_outcomes:
        reporter.outcomes = []
    # Where a task's own logs go, in every worker.
    prepared.stage.run_dir = os.path.abspath(run_dir)
    unrecorded = records.write_provenance(
        [task.provenance_path(root) for root in record["output_roots"]],
        type(task).__name__,
        prepared.config,
        reporter.record_path,
    )
    if unrecorded is not None:
        reporter.note(f"warning: cannot record what made these outputs ({unrecorded})")
    return reporter


def execute(request: Request) -> RunResult:
    """Configure, plan, run and report one run; what the command line and Python share."""
    prepared = prepare(request)
    from dispatcher.execution.signals import StopSignal

    forget_folders()  # what an earlier run in this process saw of them may have changed
    storage.forget([*prepared.task.input_roots(), *prepared.task.output_roots()])

    # Handlers are installed only in the main thread (Python allows no other).
    with StopSignal(request.grace) as stop:
        stop.announce = logger.info
        if prepared.manifest is not None:
            made = plan_from_manifest(
                prepared.stage, prepared.manifest, prepared.shards, request.force
            )
        else:
            made = make_plan(prepared.stage, prepared.shards, force=request.force)
        plan = limited(made, request.limit)
        counts = Counts.planned(plan)
        if request.plan_only:
            return RunResult(EXIT_OK, counts, plan=_summary(plan, request.force))
        if plan.pending or plan.leftovers:
            _check_output_roots(prepared.task)
        lease = _take_lease(prepared, plan, stop)
        try:
            early = _before_running(request, prepared, plan, stop, lease)
            if early is not None:
                return RunResult(early, counts)
            reporter = _start_recording(request, prepared, plan, counts)
            reporter.fail_fast = FailFast(request.max_failures, request.keep_going)
            reporter.stop = stop
            context = RunContext(
                prepared.stage, plan.pending, reporter, stop, reporter.run_dir, lease
            )
            task_log = open_run_log(reporter.run_dir)
            try:
                run_engine(prepared.backbone, context)
            except BaseException as exc:
                code = reporter.finish(stop.signum)
                if not is_task_exit(exc):
                    raise
                # A task's sys.exit() that the backbone let through: recorded as a crash, and
                # the exit code is the run's, not the one the task passed to sys.exit().
            else:
                code = reporter.finish(stop.signum)
            finally:
                close_run_log(task_log)
        finally:
            prepared.stage.work_alone(False)
            if lease is not None:
                lease.release()
    return RunResult(
        code, reporter.counts, reporter.outcomes or [], reporter.run_dir, reporter.record_path
    )


def _take_lease(prepared: Prepared, plan: Plan, stop: StopSignal) -> RunLease | None:
    """The run's lease at its output roots, when it has items to make or leftovers to
    remove: taken after the plan (which writes nothing) and before any leftover is removed,
    once no overlapping run commits alone there (`dispatcher.outputs.lease`)."""
    # A store has no byte-range locks: its roots take no lease (every item is claimed).
    roots = sorted(
        {os.path.abspath(urls.local(r)) for r in prepared.task.output_roots() if not urls.is_url(r)}
    )
    if not (plan.pending or plan.leftovers) or not roots:
        return None
    stage = prepared.stage
    way, indices, count = sharding.overlap_class(plan.shards)
    # Disjoint shards hold disjoint items only over the same items: the task and where its
    # items come from are part of the way of sharding.
    way = f"{type(prepared.task).__name__} {stage.source.origin()} {way}"
    lease = stage.source.lease(roots, (way, indices, count), note, stop.is_set)
    if lease is not None:
        stage.alone_roots = lease.roots
    return lease


def _before_running(
    request: Request, prepared: Prepared, plan: Plan, stop: StopSignal, lease: RunLease | None
) -> int | None:
    """What happens between the lease and the first item: leftovers removed, a changed
    configuration noted. The exit code when the run ends here (a signal, nothing found,
    nothing to do); None when items are to run."""
    task = prepared.task
    # Killed attempts' staging, retired and lock names, unless a live run holds them (one
    # still committing alone holds no claim: then they wait for the next run).
    if lease is None or not lease.unsettled:
        prepared.stage.source.remove_leftovers(plan.leftovers)
    prepared.stage.source.settle(plan.pending, request.force)
    if stop.is_set():
        return stop.exit_code or EXIT_SIGINT
    if not plan.found:
        logger.info(f"no items found {prepared.stage.source.origin()}")
        return EXIT_OK
    changed = None if request.force or not plan.done else _config_change(request, task, prepared)
    if not plan.pending:
        line = f"{plan.in_shard} items in this shard, all done ({plan.found} found)"
        if changed is not None:
            line += f", but made with another configuration ({changed}); --force remakes them"
        logger.info(f"nothing to do: {line}")
        return EXIT_OK
    if changed is not None:
        note(
            f"the {plan.done} done items were made with another "
            f"configuration ({changed}); they are kept (--force remakes them)"
        )
    return None
