"""A ModelArts operator package as files: `operator.yaml`'s mode and typed arguments, the
classes of `program_package/process.py`, and the `args` each class is built with.

Everything here is read before any work: a malformed package or argument is a usage
error (one line, exit 2), naming the file and line where YAML gives one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from dispatcher.config.placeholders import MISSING, Placeholder, coerce
from dispatcher.errors import UsageError
from dispatcher.storage import urls

PROGRAM = "program_package"
SPEC = "operator.yaml"
CLASSES = ("PreProcess", "Process", "PostProcess")
ROOT_ARGS = ("obs_input_path", "obs_output_path")
TYPES = ("str", "int", "float", "bool", "enum", "json")
RESERVED = ("input", "output", "input_mode", "output_mode", "finish", "shard", "hard_shard")
"""Mixin keys the adapter declares itself: no operator argument may take one."""


# --- operator.yaml ---------------------------------------------------------------------------


class _Mapping(dict):
    """A YAML mapping that remembers its line, for `operator.yaml:LINE` messages."""

    line = 0


def _yaml_load(path: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any) -> _Mapping:
        out = _Mapping(loader.construct_mapping(node, deep=True))
        out.line = node.start_mark.line + 1
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"invalid {path}{line}: {exc.problem or exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def json_value(value: Any) -> Any:
    """A `json` parameter: text is parsed as JSON; a YAML list or mapping is taken as it is."""
    if isinstance(value, str):
        return json.loads(value)
    return value


json_value.__name__ = "json"


@dataclasses.dataclass(frozen=True)
class Argument:
    """One declared operator parameter, as ModelArts Workflow types them."""

    name: str
    type: str
    default: Any
    choices: tuple[Any, ...] | None
    description: str

    def placeholder(self) -> Placeholder:
        """enum: its choices (any scalar type); json: parsed from text; the rest by type."""
        kind = {"str": str, "int": int, "float": float, "bool": bool, "enum": None}
        tp = json_value if self.type == "json" else kind[self.type]
        choices = list(self.choices) if self.choices is not None else None
        return Placeholder(tp, self.default, choices, self.description)


def _argument(raw: Any, where: str) -> Argument:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: an argument is a mapping with name and type, got {raw!r}")
    at = f"{where}:{raw.line}" if isinstance(raw, _Mapping) else where
    name = raw.get("name", raw.get("key"))
    if not isinstance(name, str) or not name.isidentifier():
        raise UsageError(f"{at}: argument name must be an identifier, got {name!r}")
    if name in RESERVED or name in ROOT_ARGS:
        raise UsageError(f"{at}: argument '{name}' is reserved (the input and output roots)")
    kind = str(raw.get("type", "str")).lower()
    if kind not in TYPES:
        raise UsageError(f"{at}: argument '{name}' has type {kind!r}; one of {', '.join(TYPES)}")
    choices = raw.get("choices", raw.get("enum_list"))
    if choices is not None and (not isinstance(choices, list) or not choices):
        raise UsageError(f"{at}: argument '{name}': choices must be a non-empty list")
    if kind == "enum" and choices is None:
        raise UsageError(f"{at}: enum argument '{name}' needs choices (or enum_list)")
    default = raw.get("default", MISSING)
    if default is not MISSING and default is not None:
        try:
            default = coerce(default, json_value if kind == "json" else _PY[kind], MISSING)
        except ValueError as exc:
            raise UsageError(f"{at}: default of argument '{name}': {exc}") from None
        if choices is not None and default not in choices:
            raise UsageError(f"{at}: default of '{name}', {default!r}, is not one of {choices}")
    return Argument(
        name, kind, default, tuple(choices) if choices else None, str(raw.get("description", ""))
    )


_PY: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "enum": None}


def _flag(data: Any, runtime: Any, name: str, path: str, default: bool) -> bool:
    """A true/false setting of `operator.yaml`, at the top or under `runtime:`."""
    value = data.get(name)
    if value is None and isinstance(runtime, dict):
        value = runtime.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        line = getattr(runtime if name not in data else data, "line", 1)
        raise UsageError(f"invalid {path}:{line}: {name} must be true or false")
    return value


def read_spec(path: str) -> tuple[bool, tuple[Argument, ...], str, bool]:
    """(auto data loading, declared arguments, description, whether row ranges may be
    given to it) from `operator.yaml`."""
    data = _yaml_load(path)
    if data is None:
        data = _Mapping()
    if not isinstance(data, dict):
        raise UsageError(f"invalid {path}:1: expected a mapping at the top level")
    runtime = data.get("runtime")
    auto = _flag(data, runtime, "auto-data-loading", path, True)
    # An operator that looks across rows (dedup, a whole-file PostProcess) says so: then
    # --rows-per-item, which would hand it one range at a time, is refused.
    splittable = _flag(data, runtime, "split-rows", path, True)
    raw_args = data.get("arguments") or []
    if not isinstance(raw_args, list):
        raise UsageError(f"invalid {path}:{data.line}: arguments must be a list")
    arguments = tuple(_argument(raw, path) for raw in raw_args)
    names = [a.name for a in arguments]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"invalid {path}: arguments declared twice: {', '.join(twice)}")
    return auto, arguments, str(data.get("description", "") or ""), splittable


# --- the package -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Package:
    root: str
    name: str
    auto_loading: bool
    arguments: tuple[Argument, ...]
    description: str
    splittable: bool = True
    """Whether its Process may be given a file's rows one range at a time."""

    @property
    def code(self) -> str:
        return os.path.join(self.root, PROGRAM, "process.py")

    @property
    def install_script(self) -> str | None:
        path = os.path.join(self.root, PROGRAM, "install.sh")
        return path if os.path.isfile(path) else None


def read_package(path: str) -> Package:
    root = os.path.realpath(path)
    if not os.path.isdir(os.path.join(root, PROGRAM)):
        raise UsageError(f"operator package {path} has no {PROGRAM}/ folder")
    if not os.path.isfile(os.path.join(root, PROGRAM, "process.py")):
        raise UsageError(f"operator package {path} has no {PROGRAM}/process.py")
    spec = os.path.join(root, SPEC)
    auto, arguments, description, splittable = (
        read_spec(spec) if os.path.exists(spec) else (True, (), "", True)
    )
    return Package(root, os.path.basename(root), auto, arguments, description, splittable)


def operator_classes(package: Package) -> dict[str, type]:
    """PreProcess, Process, PostProcess from `process.py` (imported with the shims on the path)."""
    from dispatcher.loader import load_module
    from templates.adapters import shims

    if shims.PATH not in sys.path:
        sys.path.insert(0, shims.PATH)  # `import ma_utils`, `import moxing` as on the platform
    module = load_module(package.code)
    found = {n: getattr(module, n) for n in CLASSES if isinstance(getattr(module, n, None), type)}
    if "Process" not in found:
        raise UsageError(f"{package.code} defines no class Process")
    return found


class Args(dict):
    """An operator's `args`: mapping access (`args["x"]`, `"x" in args`) and `args.x`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def root_path(value: str) -> str:
    """A root as the operator and the adapter see it: a store URL as given (in one
    spelling), as ModelArts hands over OBS paths; a local path absolute."""
    return urls.canonical(value) if urls.is_url(value) else os.path.abspath(urls.local(value))


def operator_args(package: Package, mixin: Any) -> Args:
    values = Args({a.name: mixin[a.name] for a in package.arguments})
    values["obs_input_path"] = root_path(mixin["input"])
    values["obs_output_path"] = root_path(mixin["output"])
    return values
