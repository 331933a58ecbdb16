"""Task and backbone options: one parser for both, and options from Python as its words.

Both kinds of option share one command line after TASK_FILE TASK_CLASS, so they are
parsed together; which action belongs to whom is kept to split the result.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from dispatcher.engines import Backbone
from dispatcher.errors import UsageError
from dispatcher.task import Task


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


def namespace_of(ns: argparse.Namespace, actions: list[argparse.Action]) -> argparse.Namespace:
    return argparse.Namespace(
        **{a.dest: getattr(ns, a.dest) for a in actions if hasattr(ns, a.dest)}
    )


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


def unexpected_argument(token: str) -> str:
    """The error for a word nothing takes; a `k=v` is most likely a missing `--mixin`."""
    if "=" in token and not token.startswith("="):
        return f"unexpected argument '{token}' (did you mean --mixin {token}?)"
    return f"unexpected argument '{token}' (nothing takes it)"
