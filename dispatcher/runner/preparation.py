"""A run's request, and everything checked before the plan is made.

Every problem with the configuration is found here, together, before anything is
planned or written: a bad run exits 2 having written nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from typing import Any

from dispatcher import engines as registry  # names and loads backbones: the seam
from dispatcher import sharding
from dispatcher.config.layers import (
    LayeredConfig,
    apply_option_defaults,
    load_layers,
    replay_problems,
)
from dispatcher.config.placeholders import fill
from dispatcher.engines import Backbone
from dispatcher.errors import ErrorList, UsageError
from dispatcher.loader import load_task_class
from dispatcher.outputs import root_overlaps
from dispatcher.report.log import logger, note
from dispatcher.runner.options import (
    Options,
    build_options,
    namespace_of,
    option_words,
    unexpected_argument,
)
from dispatcher.runner.request import Invocation, option_hint
from dispatcher.stage import Stage, adapter_for
from dispatcher.task import Task


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
    install: bool = False
    """`--install`: run the package's install script once before the run."""
    keep_outcomes: bool = False
    submitting: bool = False
    """Prepared to be submitted elsewhere (`dispatch submit`): every check, but no device is
    looked for and no install script is run; the backbone is not built."""
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


@dataclasses.dataclass
class Prepared:
    task: Task
    stage: Stage
    backbone: Backbone | None
    """None when the run is only being submitted (`Request.submitting`)."""
    shards: list[sharding.ShardSpec]
    config: dict[str, Any]


def names_task(inv: Invocation | Request) -> bool:
    """Whether a task is named: a file and a class, or an operator package folder."""
    return bool(inv.task_file and (inv.task_class or os.path.isdir(inv.task_file)))


def require_task(inv: Invocation | Request) -> tuple[str, str | None]:
    """(task file, class name); a package folder has no class name (None)."""
    if inv.task_file and os.path.isdir(inv.task_file):
        return inv.task_file, inv.task_class or None
    if not inv.task_file or not inv.task_class:
        raise UsageError(
            "TASK_FILE and TASK_CLASS are required (on the command line, or as task_file: and "
            "task_class: in --cfg), or an operator package folder; dispatch -h shows the usage"
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


def _task_class(request: Request) -> tuple[type[Task], str | None, str | None]:
    """The task class, its file (None for a class from a module without one), its name."""
    if request.task_cls is not None:
        module = sys.modules.get(request.task_cls.__module__)
        path = getattr(module, "__file__", None)
        return request.task_cls, path, request.task_cls.__qualname__
    task_file, class_name = require_task(request)
    return load_task_class(task_file, class_name), task_file, class_name


def prepare(request: Request | Invocation) -> Prepared:
    """Load, configure and validate everything; every problem is raised together."""
    inv = request_from(request) if isinstance(request, Invocation) else request
    layers: LayeredConfig = load_layers(inv.cfg, inv.mixin_cfg, inv.mixin, inv.mixin_values)
    take_cfg_settings(inv, layers.run)
    task_cls, task_file, class_name = _task_class(inv)
    stage_cls = stage_class(task_cls)
    backbone_cls = registry.resolve(inv.backbone, task_cls, stage_cls)
    options = build_options(backbone_cls, task_cls)
    errors = ErrorList()
    for problem in stage_cls.problems(task_cls):
        errors.add(problem)
    for problem in task_cls.missing_requirements():
        errors.add(problem)
    _apply_cfg_options(options, backbone_cls, layers, errors)
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

    task_args = namespace_of(namespace, options.task_actions)
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
        roots = [*task.input_roots(), *task.output_roots()]
        errors.extend(UsageError(*replay_problems(layers.run.get("cwd"), to_plain(mixin), roots)))
    errors.extend(UsageError(*task.argument_problems()))
    shards = list(task.shard_specs())
    if cli_shard is not None:
        shards.append(cli_shard)
    unsharded = sharding.unsharded_array_problem(inv.shard, task.splits_itself())
    if unsharded:
        errors.add(unsharded)
    errors.raise_if_any()
    backbone_options = namespace_of(namespace, options.backbone_actions)
    backbone: Backbone | None = None
    if inv.submitting:
        backbone_cls.check_options(backbone_options)
    else:
        if not inv.plan_only:
            _install_step(stage_cls, task_cls, inv)
        backbone = backbone_cls(backbone_options)
    config = {
        "task_file": os.path.abspath(task_file) if task_file else None,
        "task_class": class_name,
        "cwd": os.getcwd(),  # what relative paths below are relative to
        "backbone": {"name": backbone_cls.name, "options": to_plain(vars(backbone_options))},
        "task": to_plain(vars(task_args)),
        "mixin": to_plain(mixin),
        # Only the command line's shard: the task's own shards are in its mixin.
        "shard": sharding.describe([cli_shard] if cli_shard is not None else []),
        "force": inv.force,
    }
    return Prepared(task, stage_cls(task, force=inv.force), backbone, shards, config)


def _apply_cfg_options(
    options: Options, backbone_cls: type[Backbone], layers: LayeredConfig, errors: ErrorList
) -> None:
    """`--cfg`'s task: and backbone: sections as the defaults of their options."""
    texts = layers.option_text
    apply_option_defaults(
        options.parser, options.task_actions, layers.task, "task", errors, texts.get("task")
    )
    apply_option_defaults(
        options.parser,
        options.backbone_actions,
        _options_for(backbone_cls, options, layers),
        "backbone",
        errors,
        texts.get("backbone"),
    )


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
        note(
            f"--cfg options of backbone '{named}' that '{backbone_cls.name}' "
            f"does not have are not used: {', '.join(map(str, foreign))}"
        )
    return {k: v for k, v in layers.backbone.items() if k not in foreign}


def _install_step(stage_cls: type[Stage], task_cls: type[Task], inv: Request) -> None:
    """Run the package's install script when `--install` asks (once, before the run), or
    say in one line that it exists and has not been run."""
    script = stage_cls.install_script(task_cls)
    if script is None:
        if inv.install:
            note(f"--install: {task_cls.__name__} has no install script")
        return
    import hashlib
    import subprocess

    with open(script, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:16]
    folder = os.path.join(inv.log_dir, "install")
    log = os.path.join(folder, f"{task_cls.__name__}-{digest}.log")
    done = log + ".ok"
    if not inv.install:
        if not os.path.exists(done):
            note(f"{script} has not been run (--install runs it once)")
        return
    os.makedirs(folder, exist_ok=True)
    logger.info(f"running {script} (output in {log})")
    with open(log, "wb") as out:
        code = subprocess.call(
            ["bash", os.path.basename(script)],
            cwd=os.path.dirname(script),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    if code != 0:
        raise UsageError(f"{script} failed with exit code {code}; its output is in {log}")
    with open(done, "w") as fh:
        fh.write(script + "\n")


def stage_class(task_cls: type[Task]) -> type[Stage]:
    adapter = adapter_for(task_cls)
    if adapter is None:
        raise UsageError(f"no adapter runs {task_cls.__name__}: it is not a task class")
    return adapter
