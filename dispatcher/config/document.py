"""`--print-config`: a document `--cfg` reads back as the same values."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from dispatcher.config.declaration import MISSING
from dispatcher.config.values import TYPED, YAML_FLOAT, is_plain_data, loader
from dispatcher.errors import UsageError

if TYPE_CHECKING:
    import yaml


_INTERPOLATION = re.compile(r"(\\*)\$\{")


def _escaped(value: Any) -> Any:
    """`value` with each `${` escaped as OmegaConf reads it back (`\\${`, and each
    backslash before it doubled): a value is its text, not an interpolation, once printed."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


@functools.cache
def _dumper() -> type[yaml.SafeDumper]:
    """A dumper that quotes every string the `typed` loader would read as something else
    (`'1e3'`, `'0123'`, `'yes'`, `'null'`, `''`)."""
    import yaml

    dumper = type("_ConfigDumper", (yaml.SafeDumper,), {})
    dumper.add_implicit_resolver("tag:yaml.org,2002:float", YAML_FLOAT, list("-+0123456789."))
    return dumper


def _differences(ours: Any, back: Any, path: str) -> list[str]:
    """The dotted paths where `back` (the document read again) is not `ours`."""
    if isinstance(ours, dict) and isinstance(back, dict) and list(ours) == list(back):
        return [p for k in ours for p in _differences(ours[k], back[k], f"{path}.{k}".lstrip("."))]
    if isinstance(ours, list) and isinstance(back, list) and len(ours) == len(back):
        return [p for i, v in enumerate(ours) for p in _differences(v, back[i], f"{path}.{i}")]
    same_nan = isinstance(ours, float) and isinstance(back, float) and ours != ours and back != back
    if same_nan or (type(ours) is type(back) and ours == back):
        return []
    return [path]


def config_document(config: dict[str, Any]) -> str:
    """The YAML `--print-config` writes: `--cfg` reads every value back as it is here (a
    `str` as its text, `${` included). A value YAML cannot write back is refused, naming it."""
    import yaml

    escaped = _escaped(config)
    unwritable = _differences(escaped, _plain_copy(escaped), "")
    if not unwritable:
        text = yaml.dump(escaped, Dumper=_dumper(), sort_keys=False)
        unwritable = _differences(escaped, yaml.load(text, Loader=loader(TYPED)), "")
    if unwritable:
        raise UsageError(
            *(
                f"--print-config: {path} cannot be written so that --cfg reads it back as it is"
                for path in unwritable
            )
        )
    return text


def _plain_copy(value: Any) -> Any:
    """`value` with anything YAML cannot hold (an object, a tuple, a key that is not
    text or a number) replaced, so `_differences` names it."""
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            return None
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value if is_plain_data(value) else MISSING
