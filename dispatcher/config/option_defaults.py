"""`--cfg` task and backbone sections as the defaults of their command-line options (the
command line still wins)."""

from __future__ import annotations

import argparse
from typing import Any

from dispatcher.errors import ErrorList, did_you_mean


def _option_key(text: str) -> str:
    return text.lstrip("-").replace("-", "_")


def apply_option_defaults(
    parser: argparse.ArgumentParser,
    actions: list[argparse.Action],
    values: dict[str, Any],
    section: str,
    errors: ErrorList,
    texts: dict[str, Any] | None = None,
) -> None:
    """Make a `--cfg` section's values the defaults of the matching `actions` of `parser`.

    Keys match an option's dest or any of its option strings (`batch_size`, `batch-size`,
    `--batch-size`). Flags take booleans, list options take lists; the command line still
    overrides. Unknown keys are errors with a suggestion. `texts` is the section with each
    scalar as written: an option without a type takes text, as on the command line.
    """
    by_key: dict[str, argparse.Action] = {}
    for action in actions:
        if isinstance(action, argparse._HelpAction) or action.dest == argparse.SUPPRESS:
            continue
        by_key[_option_key(action.dest)] = action
        for opt in action.option_strings:
            by_key.setdefault(_option_key(opt), action)
    for key, value in values.items():
        action = by_key.get(_option_key(str(key)))
        if action is None:
            known = sorted({a.dest for a in by_key.values()})
            hint = did_you_mean(_option_key(str(key)), known)
            errors.add(f"--cfg {section}.{key}: no such {section} option{hint}")
            continue
        if action.type is None and not isinstance(value, (str, bool, list, dict)):
            written = (texts or {}).get(key)
            value = written if isinstance(written, str) else value
        try:
            value = _convert_for_action(action, value)
        except ValueError as exc:
            errors.add(f"--cfg {section}.{key}: {exc}")
            continue
        action.required = False
        parser.set_defaults(**{action.dest: value})


def _convert_for_action(action: argparse.Action, value: Any) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    many = (
        action.nargs in ("*", "+")
        or isinstance(action.nargs, int)
        or isinstance(action, argparse._AppendAction)
    )
    if many:
        if not isinstance(value, list):
            value = [value]
        converted = [_convert_one(action, v) for v in value]
        if isinstance(action.nargs, int) and len(converted) != action.nargs:
            raise ValueError(f"expected {action.nargs} values, got {len(converted)}")
        return converted
    if isinstance(value, (list, dict)) and action.type is None:
        return value
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if action.type is not None and isinstance(value, str):
        try:
            value = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"invalid value {value!r}: {exc}") from None
    elif action.type in (int, float) and not isinstance(value, (int, float)):
        raise ValueError(f"expected {action.type.__name__}, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not one of {list(action.choices)!r}")
    return value
