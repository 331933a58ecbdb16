"""Where each mixin value was written: `FILE:LINE` for a value a `--cfg` or `--mixin-cfg`
file gave, so that a problem with it names the place to fix, not only its dotted key.

Read from the YAML node tree (`yaml.compose`: the marks, no values), only when a file
layer is used; a value the command line or Python sets has no file origin.
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher.errors import ErrorList

_NAMED = re.compile(r"(?:mixin|unknown mixin key|unfilled placeholder) '([^']+)'")


def file_origins(path: str, section: str | None = None) -> dict[str, str]:
    """Dotted key -> `path:LINE` of every value in the YAML file `path` (under its
    mapping `section`, when given); {} when the file cannot be read (its reader says why)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            root = yaml.compose(fh, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    if section is not None:
        root = _child(root, section)
    origins: dict[str, str] = {}
    _walk(root, "", path, origins)
    return origins


def _child(node: Any, key: str) -> Any:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for name, value in node.value:
        if getattr(name, "value", None) == key:
            return value
    return None


def _walk(node: Any, prefix: str, path: str, origins: dict[str, str]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            key = f"{prefix}.{name.value}" if prefix else str(name.value)
            origins[key] = f"{path}:{name.start_mark.line + 1}"
            _walk(value, key, path, origins)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            key = f"{prefix}.{i}"
            origins[key] = f"{path}:{value.start_mark.line + 1}"
            _walk(value, key, path, origins)


def placed(errors: ErrorList, origins: dict[str, str]) -> ErrorList:
    """`errors` with each message about a mixin key a file set prefixed by its `FILE:LINE`."""
    if not origins:
        return errors
    out = ErrorList()
    for message in errors.messages:
        named = _NAMED.match(message)
        where = origins.get(named.group(1)) if named else None
        out.add(f"{where}: {message}" if where else message)
    return out
