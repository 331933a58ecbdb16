"""Everything checked before the plan is made, from one run's `Request`.

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

from dispatcher import engines, sharding
from dispatcher.config.layers import LayeredConfig, apply_option_defaults, load_layers
from dispatcher.config.origins import placed
from dispatcher.config.placeholders import fill
from dispatcher.engines import Backbone
from dispatcher.errors import ErrorList, UsageError
from dispatcher.loader import load_task_class
from dispatcher.manifest import Manifest, read_manifest, run_problems
from dispatcher.outputs import root_overlaps
from dispatcher.report.log import logger, note
from dispatcher.runner.options import (
    Options,
    build_options,
    namespace_of,
    option_words,
    unexpected_argument,
)
from dispatcher.runner.printed_folder import enter_printed_folder
from dispatcher.runner.request import Request, option_hint
from dispatcher.stage import Stage, adapter_for
from dispatcher.storage.urls import canonical, is_url
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
class Prepared:
    task: Task
    stage: Stage
    backbone: Backbone | None
    """None when the run is only being submitted (`Request.submitting`)."""
    shards: list[sharding.ShardSpec]
    config: dict[str, Any]
    manifest: Manifest | None = None
    """`--manifest FILE`: where the plan reads its items (the last shard names the segment)."""


def _task_class(request: Request) -> tuple[type[Task], str | None, str | None]:
    """The task class, its file (None for a class from a module without one), its name."""
    if request.task_cls is not None:
        module = sys.modules.get(request.task_cls.__module__)
        path = getattr(module, "__file__", None)
        return request.task_cls, path, request.task_cls.__qualname__
    task_file, class_name = request.task_place()
    return load_task_class(task_file, class_name), task_file, class_name


def prepare(request: Request) -> Prepared:
    """Load, configure and validate everything; every problem is raised together."""
    layers: LayeredConfig = load_layers(
        request.cfg, request.mixin_cfg, request.mixin, request.mixin_values
    )
    own_task_file = request.task_file is not None
    request.take_cfg_settings(layers.run)
    enter_printed_folder(request, layers.run.get("cwd"), own_task_file)
    if "storage" in layers.run:  # per-root store options, for this process and its workers
        from dispatcher.storage.client import configure

        configure(layers.run["storage"])
    task_cls, task_file, class_name = _task_class(request)
    stage_cls = stage_class(task_cls)
    backbone_cls = engines.resolve(request.backbone, task_cls, stage_cls)
    options = build_options(backbone_cls, task_cls)
    errors = ErrorList()
    for problem in [*stage_cls.problems(task_cls), *task_cls.missing_requirements()]:
        errors.add(problem)
    _apply_cfg_options(options, backbone_cls, layers, errors)
    filling = ErrorList()
    mixin = fill(task_cls.mixin, layers.mixin, filling, layers.mixin_text)
    errors.extend(placed(filling, layers.origins))
    cli_shard = _cli_shard(request, errors)
    namespace = _parse_options(options, request, errors)
    errors.raise_if_any()

    task_args = namespace_of(namespace, options.task_actions)
    task = _make_task(task_cls, class_name, task_args, mixin)
    shards = _checked_shards(task, request, cli_shard)
    stage = stage_cls(task, force=request.force)
    if request.rows_per_item is not None:
        problem = stage.split_rows(request.rows_per_item)
        if problem is not None:
            raise UsageError(problem)
    backbone_options = namespace_of(namespace, options.backbone_actions)
    backbone: Backbone | None = None
    if request.submitting:
        backbone_cls.check_options(backbone_options)
    else:
        if not request.plan_only:
            _install_step(stage_cls, task_cls, request)
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
        "force": request.force,
    }
    if request.rows_per_item is not None:
        config["rows_per_item"] = request.rows_per_item
    manifest = None
    if request.manifest is not None:
        manifest = _manifest_for(request, task, config, shards, cli_shard)
    return Prepared(task, stage, backbone, shards, config, manifest)


def _manifest_for(
    request: Request,
    task: Task,
    config: dict[str, Any],
    shards: list[sharding.ShardSpec],
    cli_shard: sharding.ShardSpec | None,
) -> Manifest:
    """The manifest of `--manifest`, checked against this run; `--shard I/N` becomes its
    segment I (in `shards`, in place of the shard it would select by key). N may be any
    count the manifest has had: segments added by a replan leave segment I as it was."""
    manifest = read_manifest(request.manifest or "")
    roots = [canonical(root) for root in task.output_roots()]
    problems = run_problems(manifest, config, roots)
    if cli_shard is not None and not request.submitting:  # submit checks --array N itself
        index, asked = _one_index(cli_shard)
        count = len(manifest.segments)
        if index is None or asked not in manifest.counts:
            problems.append(
                f"--shard {request.shard}: --manifest {manifest.path} has "
                f"{manifest.counts_text()}: give --shard I/{count}, auto or all"
            )
        else:
            shards[-1] = sharding.SegmentShard(index, count, os.path.abspath(manifest.path))
    if problems:
        raise UsageError(*problems)
    return manifest


def _one_index(shard: sharding.ShardSpec) -> tuple[int | None, int]:
    """(I, N) of a `--shard I/N` naming one shard of either mode (over a manifest the
    segments are the shards, whatever the mode); (None, 0) for several indices."""
    if isinstance(shard, sharding.HashShard):
        return shard.index, shard.count
    if isinstance(shard, sharding.IndexShard) and len(shard.indices()) == 1:
        return shard.indices()[0], shard.shard_num
    return None, 0


def _cli_shard(request: Request, errors: ErrorList) -> sharding.ShardSpec | None:
    """`--shard` as a shard (None when every item runs); its mistake goes to `errors`."""
    try:
        return sharding.parse_cli_shard(request.shard, request.shard_mode)
    except UsageError as exc:
        errors.extend(exc)
        return None


def _parse_options(options: Options, request: Request, errors: ErrorList) -> argparse.Namespace:
    """Task and backbone options, the command line's words and Python's alike, parsed by one
    parser; every unknown option and stray word goes to `errors`."""
    namespace = argparse.Namespace()
    try:
        words = [*request.rest, *option_words(options.parser, request.options)]
        namespace, extras = options.parser.parse_known_args(words)
    except UsageError as exc:
        errors.extend(exc)
        return namespace
    known = [s for a in options.parser._actions for s in a.option_strings]
    after_unknown = False
    for extra in extras:
        if extra.startswith("-") and extra != "-":
            name = extra.split("=", 1)[0]
            errors.add(f"unrecognized option {name}{option_hint(name, known)}")
            after_unknown = True
        elif not after_unknown:
            errors.add(unexpected_argument(extra))
    return namespace


def _make_task(
    task_cls: type[Task], class_name: str | None, task_args: argparse.Namespace, mixin: Any
) -> Task:
    """The configured task; its constructor failing is a configuration error."""
    try:
        return task_cls(task_args, mixin)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{class_name}(...) failed: {type(exc).__name__}: {exc}") from exc


def _checked_shards(
    task: Task,
    request: Request,
    cli_shard: sharding.ShardSpec | None,
) -> list[sharding.ShardSpec]:
    """The run's shards (the task's own, then `--shard`), once the configured task's own
    checks pass; every problem is raised together."""
    errors = ErrorList()
    problems = task.validate()
    errors.extend(UsageError(*problems))
    if not problems:  # roots are known once the configuration is valid
        errors.extend(UsageError(*root_overlaps(task.input_roots(), task.output_roots())))
        roots = [*task.input_roots(), *task.output_roots()]
        if any(map(is_url, roots)):  # a bucket that is missing or unreachable: before any work
            from dispatcher.storage import root_problems

            errors.extend(UsageError(*root_problems(roots)))
    errors.extend(UsageError(*task.argument_problems()))
    shards = list(task.shard_specs())
    if cli_shard is not None:
        shards.append(cli_shard)
    unsharded = sharding.unsharded_array_problem(request.shard, task.splits_itself())
    if unsharded:
        errors.add(unsharded)
    errors.raise_if_any()
    return shards


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
    if named in (None, engines.AUTO, backbone_cls.name):
        return layers.backbone
    known = {action.dest for action in options.backbone_actions}
    foreign = sorted(k for k in layers.backbone if str(k).replace("-", "_") not in known)
    if foreign:
        note(
            f"--cfg options of backbone '{named}' that '{backbone_cls.name}' "
            f"does not have are not used: {', '.join(map(str, foreign))}"
        )
    return {k: v for k, v in layers.backbone.items() if k not in foreign}


def _install_step(stage_cls: type[Stage], task_cls: type[Task], request: Request) -> None:
    """Run the package's install script when `--install` asks (once, before the run), or
    say in one line that it exists and has not been run."""
    script = stage_cls.install_script(task_cls)
    if script is None:
        if request.install:
            note(f"--install: {task_cls.__name__} has no install script")
        return
    import hashlib
    import subprocess

    with open(script, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:16]
    folder = os.path.join(request.log_dir, "install")
    log = os.path.join(folder, f"{task_cls.__name__}-{digest}.log")
    done = log + ".ok"
    if not request.install:
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
