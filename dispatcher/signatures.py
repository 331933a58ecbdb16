"""Checking, before any work, that a task's method can take the arguments it will be called with.

A `process(self, input)` under a template that also passes `output` would otherwise fail
every item with the same TypeError; here it is one line naming the parameter, exit 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_REQUIRABLE = (*_BY_NAME, inspect.Parameter.POSITIONAL_ONLY)
_BY_POSITION = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def call_problems(
    where: str,
    func: Callable[..., Any],
    names: Sequence[str],
    source: str,
    positional: int = 0,
    more: str | None = None,
) -> list[str]:
    """Why `func(<positional values>, **{name: ...})` would fail, one line per problem.

    `where` names the method (`Clip.process`); `source` says who passes `names` ("its
    template passes", "its items pass"). `more` describes keyword arguments that are known only at
    run time (the fields `load_data` returns); with it, a required parameter missing from
    `names` may still be passed, so only names that cannot be taken are reported.
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # a builtin or a C callable: nothing to check
        return []
    gets = ", ".join([*names, *([f"and {more}"] if more else [])]) or "nothing"
    kinds = {p.kind for p in params}
    problems: list[str] = []
    taken = [p for p in params if p.kind in _BY_POSITION][:positional]
    if len(taken) < positional and inspect.Parameter.VAR_POSITIONAL not in kinds:
        problems.append(
            f"{where}() takes {len(taken)} positional parameter(s), but is called with {positional}"
        )
    rest = [p for p in params if p not in taken]
    by_name = {p.name: p for p in rest if p.kind in _BY_NAME}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        for name in names:
            if name not in by_name:
                problems.append(
                    f"{where}() has no parameter '{name}', which {source} "
                    f"(it gets {gets}; add the parameter or **kwargs)"
                )
    if more is None:
        for p in rest:
            if p.default is not inspect.Parameter.empty or p.kind not in _REQUIRABLE:
                continue
            if p.name not in names or p.kind is inspect.Parameter.POSITIONAL_ONLY:
                problems.append(
                    f"{where}() requires '{p.name}', which nothing passes (it gets {gets})"
                )
    return problems
