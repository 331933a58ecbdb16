"""What `-h`, `-hb` and `--plan` print: a task's options and placeholders with their current
values, a backbone's options, the plan's table.
"""

from __future__ import annotations

import argparse
from typing import Any

from dispatcher import engines
from dispatcher.config.layers import load_layers
from dispatcher.config.placeholders import MISSING, describe, describe_values, fill
from dispatcher.errors import ErrorList, UsageError
from dispatcher.loader import load_task_class
from dispatcher.report.results import PlanSummary
from dispatcher.runner.options import build_options
from dispatcher.runner.preparation import stage_class
from dispatcher.runner.request import Request
from dispatcher.task import Task


def _options_help(actions: list[argparse.Action]) -> str:
    """argparse's own formatting of some options, without its usage line."""
    if not actions:
        return "  (none)"
    formatter = argparse.HelpFormatter(prog="dispatch")
    formatter.start_section(None)
    formatter.add_arguments(actions)
    formatter.end_section()
    return formatter.format_help().rstrip("\n")


def task_help(request: Request) -> str:
    if request.cfg and not request.names_task():
        request.take_cfg_settings(load_layers(request.cfg, None, []).run)
    task_file, class_name = request.task_place()
    task_cls = load_task_class(task_file, class_name)
    options = build_options(None, task_cls)
    place = f"{task_file} {class_name}" if class_name else task_file
    class_name = class_name or task_cls.__name__
    lines = [f"usage: dispatch {place} [options]"]
    doc = (task_cls.__doc__ or "").strip()
    if doc:
        lines += ["", doc]
    lines += ["", f"task {class_name} options:", _options_help(options.task_actions)]
    rows = describe(task_cls.mixin)
    lines += ["", "placeholders (fill with --mixin KEY=VALUE, --mixin-cfg or --cfg's mixin:):"]
    if not rows:
        lines.append("  (none)")
    for path, type_name, default, help_text in rows:
        # Choices are written with commas: the default follows after a semicolon then.
        sep = "; " if type_name.startswith("one of ") else ", "
        lines.append(
            f"  {path} ({type_name}{sep}{default})" + (f"\n      {help_text}" if help_text else "")
        )
    values = describe_values(task_cls.mixin, _filled_quietly(task_cls, request))
    if values:
        lines += ["", "declared values (override them the same way, by their dotted path):"]
        for path, value, help_text in values:
            lines.append(f"  {path} {value}" + (f"\n      {help_text}" if help_text else ""))
    lines += ["", "backbone options: -hb; dispatcher options: -hk"]
    return "\n".join(lines)


def _filled_quietly(task_cls: type[Task], request: Request) -> Any:
    """The declaration filled from the configuration given, for `-h` to show current values;
    its problems are for a run to report, so they are not raised here."""
    try:
        layers = load_layers(request.cfg, request.mixin_cfg, request.mixin)
    except UsageError:
        return MISSING
    return fill(task_cls.mixin, layers.mixin, ErrorList(), layers.mixin_text)


def backbone_help(request: Request) -> str:
    task_cls = load_task_class(*request.task_place()) if request.names_task() else None
    lines = []
    if request.backbone == engines.AUTO:
        lines += ["backbone 'auto': a torch task runs on 'torch', any other task on 'mp'."]
        if task_cls is None:
            lines += [
                f"known backbones: {', '.join(engines.known_names())}",
                "name a task (or --backbone NAME) to see the options of the one it chooses.",
            ]
            return "\n".join(lines)
    stage_cls = stage_class(task_cls) if task_cls is not None else None
    backbone_cls = engines.resolve(request.backbone, task_cls, stage_cls)
    options = build_options(backbone_cls, None)
    lines += [f"backbone '{backbone_cls.name}': {backbone_cls.summary}", "", "options:"]
    lines.append(_options_help(options.backbone_actions))
    return "\n".join(lines)


def print_plan(plan: PlanSummary) -> None:
    """`--plan`'s table."""
    print(f"items found:    {plan.found}")
    if plan.duplicates:
        print(
            f"duplicates:     {plan.duplicates} dropped ({_duplicates_text(plan.duplicate_keys)})"
        )
    print(f"in this shard:  {plan.in_shard}  ({plan.shards})")
    print(f"already done:   {plan.done}" + ("  (ignored: --force)" if plan.force else ""))
    limit = f"  (--limit: the first of {plan.limited_from})" if plan.limited_from else ""
    print(f"to run:         {plan.to_run}{limit}")
    if plan.leftovers:
        print(f"leftovers:      {plan.leftovers}  (removed by a run)")


def _duplicates_text(keys: list[Any]) -> str:
    return f"same key as an earlier item: {', '.join(map(str, keys))}"
