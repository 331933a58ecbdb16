"""One run, start to end: configure, plan, execute, report.

Everything that can be wrong with the configuration is found here before the plan is
made, so a bad run exits 2 having written nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time
from typing import TYPE_CHECKING, Any

from dispatcher import engines as registry  # names and loads backbones: the seam
from dispatcher import records, sharding
from dispatcher.config import LayeredConfig, apply_option_defaults, load_layers
from dispatcher.engines import Backbone
from dispatcher.errors import ErrorList, UsageError
from dispatcher.execution import is_task_exit
from dispatcher.invocation import EXIT_OK, Invocation, option_hint
from dispatcher.loader import load_task_class
from dispatcher.outputs import is_inside, remove_leftovers, root_overlaps
from dispatcher.placeholders import MISSING, describe, describe_values, fill
from dispatcher.plan import Plan, make_plan
from dispatcher.results import Counts, PlanSummary, RunResult
from dispatcher.stage import Stage, adapter_for
from dispatcher.task import Task

if TYPE_CHECKING:
    from dispatcher.report import Reporter


class _OptionParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


@dataclasses.dataclass
class Options:
    """The parser of task and backbone options, and which actions belong to whom."""

    parser: _OptionParser
    backbone_actions: list[argparse.Action]
    task_actions: list[argparse.Action]


def build_options(backbone_cls: type[Backbone] | None, task_cls: type[Task] | None) -> Options:
    parser = _OptionParser(prog="dispatch TASK_FILE TASK_CLASS", add_help=False, allow_abbrev=False)
    backbone_group = parser.add_argument_group("backbone options")
    if backbone_cls is not None:
        backbone_cls.add_arguments(backbone_group)
    task_actions: list[argparse.Action] = []
    if task_cls is not None:
        task_group = parser.add_argument_group(f"task {task_cls.__name__} options")
        try:
            task_cls.add_arguments(task_group)
        except argparse.ArgumentError as exc:
            raise UsageError(
                f"task {task_cls.__name__} declares an option the backbone owns: {exc}"
            ) from None
        task_actions = list(task_group._group_actions)
    return Options(parser, list(backbone_group._group_actions), task_actions)


def _namespace(ns: argparse.Namespace, actions: list[argparse.Action]) -> argparse.Namespace:
    return argparse.Namespace(
        **{a.dest: getattr(ns, a.dest) for a in actions if hasattr(ns, a.dest)}
    )


def to_plain(value: Any) -> Any:
    """A YAML/JSON-friendly copy of a filled declaration."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "__dict__") and not callable(value):
        return {k: to_plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


@dataclasses.dataclass
class Request:
    """One run's settings, from the command line (`request_from`) or `dispatcher.run`."""

    task_cls: type[Task] | None = None
    """A class given as an object (from Python); otherwise `task_file` and `task_class`."""
    task_file: str | None = None
    task_class: str | None = None
    backbone: str = "auto"
    cfg: str | None = None
    mixin_cfg: str | None = None
    mixin: list[str] = dataclasses.field(default_factory=list)
    """`--mixin` items, `K=V` text."""
    mixin_values: dict[str, Any] | None = None
    """Placeholder values from Python, the highest layer."""
    rest: list[str] = dataclasses.field(default_factory=list)
    """Task and backbone options as command-line words."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Task and backbone options from Python, by dest or spelling."""
    shard: str | None = None
    shard_mode: str = "hash"
    force: bool = False
    log_dir: str = "dispatch-logs"
    grace: float = 10.0
    plan_only: bool = False
    keep_outcomes: bool = False
    argv: list[str] | None = None
    given: set[str] = dataclasses.field(default_factory=set)


def request_from(inv: Invocation) -> Request:
    """The run a command line asks for."""
    names = [f.name for f in dataclasses.fields(Request)]
    request = Request(**{n: getattr(inv, n) for n in names if hasattr(inv, n)})
    request.mixin, request.rest, request.given = list(inv.mixin), list(inv.rest), set(inv.given)
    request.plan_only = inv.plan
    return request


def request_problems(request: Request) -> list[str]:
    """The settings the command line's own parser checks, checked for a request from Python."""
    problems = []
    grace = request.grace
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        problems.append(f"grace: expected a number of seconds, 0 or more, got {grace!r}")
    if request.shard_mode not in ("hash", "index"):
        problems.append(f"shard_mode: expected hash or index, got {request.shard_mode!r}")
    if request.shard is not None and not isinstance(request.shard, str):
        problems.append(f"shard: expected 'I/N', 'auto' or 'all', got {request.shard!r}")
    return problems


def option_words(parser: argparse.ArgumentParser, options: dict[str, Any]) -> list[str]:
    """Options from Python as the command-line words that set them, so the parser checks
    and converts them exactly as it does a command line's; an unknown name becomes an
    unknown option (with its did-you-mean)."""
    by_key: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for key in (action.dest, *action.option_strings):
            by_key.setdefault(key.lstrip("-").replace("-", "_"), action)
    words: list[str] = []
    for key, value in options.items():
        name = str(key).lstrip("-").replace("-", "_")
        action = by_key.get(name)
        if action is None:
            words.append("--" + name.replace("_", "-"))
            continue
        spelling = max(action.option_strings, key=len)
        if action.nargs == 0:  # a flag: True sets it, False leaves it unset
            if not isinstance(value, bool):
                raise UsageError(
                    f"option {spelling} is a flag: expected True or False, got {value!r}"
                )
            if value == (action.const is not False):
                words.append(spelling)
        elif isinstance(value, (list, tuple)):
            words += [spelling, *map(str, value)]
        else:
            words.append(f"{spelling}={value}")
    return words


@dataclasses.dataclass
class Prepared:
    task: Task
    stage: Stage
    backbone: Backbone
    shards: list[sharding.ShardSpec]
    config: dict[str, Any]


def _require_task(inv: Invocation | Request) -> tuple[str, str]:
    if not inv.task_file or not inv.task_class:
        raise UsageError(
            "TASK_FILE and TASK_CLASS are required (on the command line, or as task_file: and "
            "task_class: in --cfg; dispatch -h shows the usage)"
        )
    return inv.task_file, inv.task_class


def take_cfg_settings(inv: Invocation | Request, settings: dict[str, Any]) -> None:
    """Give `inv` the run settings a `--cfg` file names, where the command line named none.

    This is what lets `--print-config`'s output, given back to `--cfg`, run the same run.
    """
    # A class given as an object is the task, whatever the file names.
    if getattr(inv, "task_cls", None) is None:
        if inv.task_file is None and "task_file" in settings:
            inv.task_file = settings["task_file"]
        if inv.task_class is None and "task_class" in settings:
            inv.task_class = settings["task_class"]
    for name in ("backbone", "shard", "shard_mode"):
        if name in settings and name not in inv.given:
            setattr(inv, name, settings[name])
    inv.force = inv.force or settings.get("force", False)


def _task_class(request: Request) -> tuple[type[Task], str | None, str]:
    """The task class, its file (None for a class from a module without one), its name."""
    if request.task_cls is not None:
        module = sys.modules.get(request.task_cls.__module__)
        path = getattr(module, "__file__", None)
        return request.task_cls, path, request.task_cls.__qualname__
    task_file, class_name = _require_task(request)
    return load_task_class(task_file, class_name), task_file, class_name


def prepare(request: Request | Invocation) -> Prepared:
    """Load, configure and validate everything; every problem is raised together."""
    inv = request_from(request) if isinstance(request, Invocation) else request
    layers: LayeredConfig = load_layers(inv.cfg, inv.mixin_cfg, inv.mixin, inv.mixin_values)
    take_cfg_settings(inv, layers.run)
    task_cls, task_file, class_name = _task_class(inv)
    stage_cls = _stage_class(task_cls)
    backbone_cls = registry.resolve(inv.backbone, task_cls, stage_cls)
    options = build_options(backbone_cls, task_cls)
    errors = ErrorList()
    for problem in stage_cls.problems(task_cls):
        errors.add(problem)
    for problem in task_cls.missing_requirements():
        errors.add(problem)
    apply_option_defaults(options.parser, options.task_actions, layers.task, "task", errors)
    apply_option_defaults(
        options.parser,
        options.backbone_actions,
        _options_for(backbone_cls, options, layers),
        "backbone",
        errors,
    )
    mixin = fill(task_cls.mixin, layers.mixin, errors, layers.mixin_text)
    shards: list[sharding.ShardSpec] = []
    try:
        cli_shard = sharding.parse_cli_shard(inv.shard, inv.shard_mode)
    except UsageError as exc:
        errors.extend(exc)
        cli_shard = None
    namespace = argparse.Namespace()
    try:
        words = [*inv.rest, *option_words(options.parser, inv.options)]
        namespace, extras = options.parser.parse_known_args(words)
        known = [s for a in options.parser._actions for s in a.option_strings]
        after_unknown = False
        for extra in extras:
            if extra.startswith("-") and extra != "-":
                name = extra.split("=", 1)[0]
                errors.add(f"unrecognized option {name}{option_hint(name, known)}")
                after_unknown = True
            elif not after_unknown:
                errors.add(unexpected_argument(extra))
    except UsageError as exc:
        errors.extend(exc)
    errors.raise_if_any()

    task_args = _namespace(namespace, options.task_actions)
    try:
        task = task_cls(task_args, mixin)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{class_name}(...) failed: {type(exc).__name__}: {exc}") from exc
    problems = task.validate()
    errors.extend(UsageError(*problems))
    if not problems:  # roots are known once the configuration is valid
        errors.extend(UsageError(*root_overlaps(task.input_roots(), task.output_roots())))
    errors.extend(UsageError(*task.argument_problems()))
    shards = list(task.shard_specs())
    if cli_shard is not None:
        shards.append(cli_shard)
    unsharded = sharding.unsharded_array_problem(inv.shard, task.splits_itself())
    if unsharded:
        errors.add(unsharded)
    errors.raise_if_any()
    backbone = backbone_cls(_namespace(namespace, options.backbone_actions))
    config = {
        "task_file": os.path.abspath(task_file) if task_file else None,
        "task_class": class_name,
        "backbone": {"name": backbone_cls.name, "options": to_plain(vars(backbone.options))},
        "task": to_plain(vars(task_args)),
        "mixin": to_plain(mixin),
        # Only the command line's shard: the task's own shards are in its mixin.
        "shard": sharding.describe([cli_shard] if cli_shard is not None else []),
        "force": inv.force,
    }
    return Prepared(task, stage_cls(task, force=inv.force), backbone, shards, config)


def _options_for(
    backbone_cls: type[Backbone], options: Options, layers: LayeredConfig
) -> dict[str, Any]:
    """The `--cfg` backbone options that apply to the backbone the run uses.

    A file names its backbone's options (`--print-config` writes them all); when the
    command line picks another backbone, the options only the file's backbone has are
    left out, in one note, rather than refused: the file was right for its backbone.
    """
    named = layers.run.get("backbone")
    if named in (None, registry.AUTO, backbone_cls.name):
        return layers.backbone
    known = {action.dest for action in options.backbone_actions}
    foreign = sorted(k for k in layers.backbone if str(k).replace("-", "_") not in known)
    if foreign:
        print(
            f"dispatch: note: --cfg options of backbone '{named}' that '{backbone_cls.name}' "
            f"does not have are not used: {', '.join(map(str, foreign))}",
            file=sys.stderr,
        )
    return {k: v for k, v in layers.backbone.items() if k not in foreign}


def _stage_class(task_cls: type[Task]) -> type[Stage]:
    adapter = adapter_for(task_cls)
    if adapter is None:
        raise UsageError(f"no adapter runs {task_cls.__name__}: it is not a task class")
    return adapter


def unexpected_argument(token: str) -> str:
    """The error for a word nothing takes; a `k=v` is most likely a missing `--mixin`."""
    if "=" in token and not token.startswith("="):
        return f"unexpected argument '{token}' (did you mean --mixin {token}?)"
    return f"unexpected argument '{token}' (nothing takes it)"


def _options_help(actions: list[argparse.Action]) -> str:
    """argparse's own formatting of some options, without its usage line."""
    if not actions:
        return "  (none)"
    formatter = argparse.HelpFormatter(prog="dispatch")
    formatter.start_section(None)
    formatter.add_arguments(actions)
    formatter.end_section()
    return formatter.format_help().rstrip("\n")


def task_help(inv: Invocation) -> str:
    if inv.cfg and not (inv.task_file and inv.task_class):
        take_cfg_settings(inv, load_layers(inv.cfg, None, []).run)
    task_file, class_name = _require_task(inv)
    task_cls = load_task_class(task_file, class_name)
    options = build_options(None, task_cls)
    lines = [f"usage: dispatch {task_file} {class_name} [options]"]
    doc = (task_cls.__doc__ or "").strip()
    if doc:
        lines += ["", doc]
    lines += ["", f"task {class_name} options:", _options_help(options.task_actions)]
    rows = describe(task_cls.mixin)
    lines += ["", "placeholders (fill with --mixin KEY=VALUE, --mixin-cfg or --cfg's mixin:):"]
    if not rows:
        lines.append("  (none)")
    for path, type_name, default, help_text in rows:
        lines.append(
            f"  {path} ({type_name}, {default})" + (f"\n      {help_text}" if help_text else "")
        )
    values = describe_values(task_cls.mixin, _filled_quietly(task_cls, inv))
    if values:
        lines += ["", "declared values (override them the same way, by their dotted path):"]
        for path, value, help_text in values:
            lines.append(f"  {path} {value}" + (f"\n      {help_text}" if help_text else ""))
    lines += ["", "backbone options: -hb; dispatcher options: -hk"]
    return "\n".join(lines)


def _filled_quietly(task_cls: type[Task], inv: Invocation) -> Any:
    """The declaration filled from the configuration given, for `-h` to show current values;
    its problems are for a run to report, so they are not raised here."""
    try:
        layers = load_layers(inv.cfg, inv.mixin_cfg, inv.mixin)
    except UsageError:
        return MISSING
    return fill(task_cls.mixin, layers.mixin, ErrorList())


def backbone_help(inv: Invocation) -> str:
    task_cls = load_task_class(*_require_task(inv)) if inv.task_file and inv.task_class else None
    lines = []
    if inv.backbone == registry.AUTO:
        lines += ["backbone 'auto': a torch task runs on 'torch', any other task on 'mp'."]
        if task_cls is None:
            lines += [
                f"known backbones: {', '.join(registry.known_names())}",
                "name a task (or --backbone NAME) to see the options of the one it chooses.",
            ]
            return "\n".join(lines)
    stage_cls = _stage_class(task_cls) if task_cls is not None else None
    backbone_cls = registry.resolve(inv.backbone, task_cls, stage_cls)
    options = build_options(backbone_cls, None)
    lines += [f"backbone '{backbone_cls.name}': {backbone_cls.summary}", "", "options:"]
    lines.append(_options_help(options.backbone_actions))
    return "\n".join(lines)


def _run_dir(inv: Request, task: Task, shards: list[sharding.ShardSpec]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = sharding.describe(shards).replace(" ", "").replace("/", "of").replace(">", "-")
    return os.path.join(inv.log_dir, type(task).__name__, f"{stamp}-{tag}-{os.getpid()}")


def _check_log_dir(log_dir: str, task: Task) -> None:
    """Output roots hold outputs only: refuse a log directory inside one."""
    real_log = os.path.realpath(log_dir)
    for root in task.output_roots():
        if is_inside(os.path.realpath(root), real_log):
            raise UsageError(
                f"log directory {log_dir} is inside the output root {root}: "
                "pass --log-dir elsewhere (output roots hold outputs only)"
            )


def _open_reporter(log_dir: str, run_dir: str, plan: Plan, record: dict[str, Any]) -> Reporter:
    """The run's reporter; a log directory it cannot write to is a configuration error."""
    from dispatcher.report import Reporter

    try:
        return Reporter(run_dir, plan.to_run, record)
    except OSError as exc:
        raise UsageError(
            f"cannot write to the log directory {log_dir}: {exc.strerror or exc} "
            f"({exc.filename or run_dir}); pass a writable --log-dir"
        ) from None


def _duplicates_text(keys: list[Any]) -> str:
    return f"same key as an earlier item: {', '.join(map(str, keys))}"


def _output_roots(task: Task) -> list[str]:
    return [os.path.realpath(root) for root in task.output_roots()]


def _config_change(inv: Request, task: Task, prepared: Prepared) -> str | None:
    """How this configuration differs from the one of the last run over the same outputs.

    None when they agree, or when no earlier run record for these output roots is found.
    """
    roots = _output_roots(task)
    if not roots:
        return None
    found = records.last_record(os.path.join(inv.log_dir, type(task).__name__), roots)
    if found is None:
        return None
    path, earlier = found
    changes = records.config_changes(earlier.get("config", {}), prepared.config)
    if not changes:
        return None
    return f"{'; '.join(changes)}; run record {path}"


def run(inv: Invocation) -> int:
    """The command line's run: help and `--print-config` here, the rest through `execute`."""
    if inv.help == "task":
        print(task_help(inv))
        return EXIT_OK
    if inv.help == "backbone":
        print(backbone_help(inv))
        return EXIT_OK
    request = request_from(inv)
    if inv.print_config:
        prepared = prepare(request)
        import yaml

        print(yaml.safe_dump(prepared.config, sort_keys=False), end="")
        return EXIT_OK
    result = execute(request)
    if result.plan is not None:
        print_plan(result.plan)
    return result.exit_code


def print_plan(plan: PlanSummary) -> None:
    """`--plan`'s table."""
    print(f"items found:    {plan.found}")
    if plan.duplicates:
        print(
            f"duplicates:     {plan.duplicates} dropped ({_duplicates_text(plan.duplicate_keys)})"
        )
    print(f"in this shard:  {plan.in_shard}  ({plan.shards})")
    print(f"already done:   {plan.done}" + ("  (ignored: --force)" if plan.force else ""))
    print(f"to run:         {plan.to_run}")
    if plan.leftovers:
        print(f"leftovers:      {plan.leftovers}  (removed by a run)")


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
    )


def _plan_counts(plan: Plan) -> Counts:
    return Counts(
        found=plan.found,
        in_shard=plan.in_shard,
        skipped=plan.done,
        to_run=plan.to_run,
        not_run=plan.to_run,
        duplicates=plan.duplicates,
    )


def _final_counts(counts: dict[str, Any]) -> Counts:
    """The run record's counts, as the result's."""
    names = {f.name for f in dataclasses.fields(Counts)}
    return Counts(**{k: v for k, v in counts.items() if k in names})


def execute(request: Request) -> RunResult:
    """Configure, plan, run and report one run; what the command line and Python share."""
    prepared = prepare(request)
    from dispatcher.signals import StopSignal

    task, stage, backbone = prepared.task, prepared.stage, prepared.backbone
    # Handlers are installed only in the main thread (Python allows no other).
    with StopSignal(request.grace) as stop:
        plan = make_plan(stage, prepared.shards, force=request.force)
        counts = {
            "found": plan.found,
            "in_shard": plan.in_shard,
            "skipped": plan.done,
            "to_run": plan.to_run,
        }
        if request.plan_only:
            return RunResult(EXIT_OK, _plan_counts(plan), plan=_summary(plan, request.force))
        # Killed attempts' staging, retired and lock names, unless a live run holds them.
        remove_leftovers(plan.leftovers)
        if stop.is_set():
            return RunResult(stop.exit_code or 130, _plan_counts(plan))
        if not plan.found:
            print(f"dispatch: no items found {task.item_source()}", file=sys.stderr)
            return RunResult(EXIT_OK, Counts())
        changed = (
            None if request.force or not plan.done else _config_change(request, task, prepared)
        )
        if not plan.pending:
            line = f"{plan.in_shard} items in this shard, all done ({plan.found} found)"
            if changed is not None:
                line += f", but made with another configuration ({changed}); --force remakes them"
            print(f"dispatch: nothing to do: {line}", file=sys.stderr)
            return RunResult(EXIT_OK, _plan_counts(plan))
        if changed is not None:
            print(
                f"dispatch: note: the {plan.done} done items were made with another "
                f"configuration ({changed}); they are kept (--force remakes them)",
                file=sys.stderr,
            )
        _check_log_dir(request.log_dir, task)
        if plan.duplicates:
            counts["duplicates"] = plan.duplicates
        record = {
            "argv": request.argv,
            "cwd": os.getcwd(),
            "config": prepared.config,
            "output_roots": _output_roots(task),
            "counts": counts,
        }
        if plan.duplicates:
            record["duplicate_keys"] = plan.duplicate_keys
        run_dir = _run_dir(request, task, prepared.shards)
        reporter = _open_reporter(request.log_dir, run_dir, plan, record)
        reporter.remember_payloads(plan.pending, task.failure_item)
        if request.keep_outcomes:
            reporter.outcomes = []
        try:
            backbone.run(stage, plan.pending, reporter, stop)
        except BaseException as exc:
            code = reporter.finish(stop.signum)
            if not is_task_exit(exc):
                raise
            # A task's sys.exit() that the backbone let through: recorded as a crash, and
            # the exit code is the run's, not the one the task passed to sys.exit().
        else:
            code = reporter.finish(stop.signum)
    return RunResult(
        code,
        _final_counts(reporter.record["counts"]),
        reporter.outcomes or [],
        run_dir,
        reporter.record_path,
    )
