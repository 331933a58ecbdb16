"""ModelArts operator packages: `NAME/program_package/process.py` run over a dataset.

`process.py` defines `Process` and optionally `PreProcess` and `PostProcess`; each is
built once per worker process as `Cls(args)` and called `obj(df) -> df`, in that order.
`NAME/operator.yaml` declares the mode (`auto-data-loading`) and typed parameters, which
become placeholders (`--mixin name=value`, listed by `-h`).

Mode 1 (auto data loading): one item per input file. Where the steps run: PreProcess
where data loads (`load`: a DataLoader worker on torch), Process where the model is
(`compute`), PostProcess and the write of the result (`write_row`: the writer thread on
torch). The stage is not batched, so `serial` and `mp` run an item as load then write, and
`write_row` runs Process itself there; on torch a DataLoader batch of files gets one
Process call per file. Mode 2: Process once, with an empty DataFrame, reading and writing
under `obs_input_path` / `obs_output_path` itself; the run is one item whose done marker
the dispatcher writes after Process returned, beside the output root (`done_marker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from dispatcher.errors import UsageError
from dispatcher.outputs import (
    Claimed,
    DoneElsewhere,
    OutputOutsideRoot,
    claimed_all,
    clear_abandoned,
    is_staging_name,
    staged,
)
from dispatcher.placeholders import MISSING, Placeholder, coerce
from dispatcher.stage import Row, Stage
from dispatcher.task import Item, Task
from templates.input_modes import InputByGlob
from templates.output_modes import FinishWhenAllExist, OutputSameFormat
from templates.runtime import Runtime

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


def read_spec(path: str) -> tuple[bool, tuple[Argument, ...], str]:
    """(auto data loading, declared arguments, description) from `operator.yaml`."""
    data = _yaml_load(path)
    if data is None:
        data = _Mapping()
    if not isinstance(data, dict):
        raise UsageError(f"invalid {path}:1: expected a mapping at the top level")
    runtime = data.get("runtime")
    auto = data.get("auto-data-loading")
    if auto is None and isinstance(runtime, dict):
        auto = runtime.get("auto-data-loading")
    if auto is None:
        auto = True
    if not isinstance(auto, bool):
        line = getattr(runtime if "auto-data-loading" not in data else data, "line", 1)
        raise UsageError(f"invalid {path}:{line}: auto-data-loading must be true or false")
    raw_args = data.get("arguments") or []
    if not isinstance(raw_args, list):
        raise UsageError(f"invalid {path}:{data.line}: arguments must be a list")
    arguments = tuple(_argument(raw, path) for raw in raw_args)
    names = [a.name for a in arguments]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"invalid {path}: arguments declared twice: {', '.join(twice)}")
    return auto, arguments, str(data.get("description", "") or "")


# --- the package -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Package:
    root: str
    name: str
    auto_loading: bool
    arguments: tuple[Argument, ...]
    description: str

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
    auto, arguments, description = read_spec(spec) if os.path.exists(spec) else (True, (), "")
    return Package(root, os.path.basename(root), auto, arguments, description)


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


def operator_args(package: Package, mixin: Any) -> Args:
    values = Args({a.name: mixin[a.name] for a in package.arguments})
    values["obs_input_path"] = os.path.abspath(mixin["input"])
    values["obs_output_path"] = os.path.abspath(mixin["output"])
    return values


# --- mode 1: one item per input file -------------------------------------------------------


class PerFileHooks:
    """The plan's hooks of a mode-1 package, answered by the template runtime: every file
    under the input root is an item (sorted keys), done when its output exists (listings)."""

    mixin: Any

    def _runtime(self) -> Runtime:
        runtime = self.__dict__.get("_dispatch_runtime")
        if runtime is None:
            runtime = self.__dict__["_dispatch_runtime"] = Runtime.from_mixin(self.mixin)
        return runtime

    def validate(self) -> list[str]:
        problems = []
        for name in ("input", "output"):
            if not isinstance(self.mixin.get(name), str) or not self.mixin.get(name):
                problems.append(f"mixin '{name}': expected a path, got {self.mixin.get(name)!r}")
        modes = self.mixin["input_mode"].problems("input_mode")
        problems += modes + self.mixin["output_mode"].problems("output_mode")
        if problems:
            return problems
        runtime = self._runtime()
        problems += runtime.input_mode.root_problems(runtime.input_value, runtime.input_root)
        if os.path.exists(runtime.output_root) and not os.path.isdir(runtime.output_root):
            problems.append(f"mixin 'output': output root {runtime.output_root} is not a folder")
        return problems

    def input_roots(self) -> list[str]:
        return [self._runtime().input_root]

    def output_roots(self) -> list[str]:
        return [self._runtime().output_root]

    def iter_items(self) -> list[Item]:
        return self._runtime().items()

    def executed_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        return self._runtime().done_mask(items)

    def final_outputs(self, keys: Sequence[str]) -> Any:
        return self._runtime().final_outputs(keys)

    def leftovers(self, items: Sequence[Item]) -> list[str]:
        return self._runtime().leftovers(items)

    def item_payload(self, key: str, payload: Any) -> dict[str, Any]:
        return self._runtime().kwargs(key, payload)

    def failure_item(self, key: str, payload: Any) -> dict[str, Any]:
        return self._runtime().describe(key, payload)

    def item_source(self) -> str:
        return f"under {self._runtime().input_value}"

    def staged_outputs(self, key: str, remake: bool = False) -> Any:
        return self._runtime().staged(key, remake)

    def _final(self, key: str) -> str | None:
        runtime = self._runtime()
        try:
            return runtime.output_mode.final(runtime.output_root, key)
        except OutputOutsideRoot:
            return None  # never staged: its item fails with the reason

    def claim_outputs(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return claimed_all([f for f in map(self._final, keys) if f is not None])

    def clear_abandoned(self, key: str) -> None:
        final = self._final(key)
        if final is not None:
            clear_abandoned(final)


# --- mode 2: one item, a done marker beside the output root ----------------------------------


def done_marker(output_root: str) -> str:
    """Where a mode-2 run records that Process returned: a hidden file beside the output
    root (`OUT/../.OUT.modelarts-done`), so the root holds only the operator's files, and
    any rerun finds it whatever its working or log directory."""
    root = os.path.abspath(output_root)
    parent, name = os.path.split(root)
    return os.path.join(parent, f".{name}.modelarts-done")


class _StagedMarker:
    """The marker's claim and staging path for the run's one item (committed on success)."""

    def __init__(self, marker: str, key: str, remake: bool) -> None:
        self.marker, self.key, self.remake = marker, key, remake
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> dict[str, Any]:
        with self._stack as stack:
            stack.enter_context(Claimed(self.marker))
            if not self.remake and os.path.lexists(self.marker):
                raise DoneElsewhere(f"{self.key} was completed by another run")
            path = stack.enter_context(staged(self.marker))
            self._stack = stack.pop_all()
        return {"output": path}

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


class WholeDatasetHooks:
    """The plan's hooks of a mode-2 package: one item, done when its marker exists."""

    mixin: Any
    package: ClassVar[Package]

    def _marker(self) -> str:
        return done_marker(self.mixin["output"])

    def validate(self) -> list[str]:
        problems = []
        for name in ("input", "output"):
            if not isinstance(self.mixin.get(name), str) or not self.mixin.get(name):
                problems.append(f"mixin '{name}': expected a path, got {self.mixin.get(name)!r}")
        if problems:
            return problems
        source = self.mixin["input"]
        if not os.path.exists(source):
            problems.append(f"mixin 'input': input {source} does not exist")
        out = os.path.abspath(self.mixin["output"])
        if os.path.dirname(out) == out:
            problems.append(f"mixin 'output': {out} has no parent folder for the done marker")
        elif os.path.exists(out) and not os.path.isdir(out):
            problems.append(f"mixin 'output': output root {out} is not a folder")
        marker = self._marker()
        inside = os.path.realpath(source)
        if os.path.realpath(os.path.dirname(marker)).startswith(inside.rstrip("/") + "/") or (
            os.path.realpath(os.path.dirname(marker)) == inside
        ):
            problems.append(
                f"mixin 'output': the done marker {marker} would lie inside the input {source}"
            )
        return problems

    def input_roots(self) -> list[str]:
        return [os.path.abspath(self.mixin["input"])]

    def output_roots(self) -> list[str]:
        return [os.path.abspath(self.mixin["output"])]

    def iter_items(self) -> list[Item]:
        return [(self.package.name, None)]

    def executed_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        done = os.path.lexists(self._marker())
        return iter([done] * len(items))

    def leftovers(self, items: Sequence[Item]) -> list[str]:
        folder, name = os.path.split(self._marker())
        with contextlib.suppress(OSError):
            return [
                os.path.join(folder, n)
                for n in os.listdir(folder)
                if n.startswith(name) and is_staging_name(n)
            ]
        return []

    def item_payload(self, key: str, payload: Any) -> Any:
        return None

    def failure_item(self, key: str, payload: Any) -> dict[str, Any]:
        return {"input": self.mixin["input"], "output": self.mixin["output"]}

    def item_source(self) -> str:
        return "(a mode-2 package is one item)"

    def staged_outputs(self, key: str, remake: bool = False) -> _StagedMarker:
        return _StagedMarker(self._marker(), key, remake)

    def claim_outputs(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        return claimed_all([self._marker()])

    def clear_abandoned(self, key: str) -> None:
        clear_abandoned(self._marker())


# --- the task class of a package -------------------------------------------------------------


def _doc(package: Package) -> str:
    mode = "mode 1: one item per input file" if package.auto_loading else "mode 2: one item"
    text = package.description or f"ModelArts operator package {package.name}"
    return f"{text}\n\n({mode}; {package.code})"


@functools.cache
def _package_task(root: str, adapter: type[Stage]) -> type[Task]:
    package = read_package(root)
    classes = operator_classes(package)
    params = {a.name: a.placeholder() for a in package.arguments}
    namespace: dict[str, Any] = {
        "__module__": f"_dispatch_operator_{package.name}",
        "__qualname__": package.name,
        "__doc__": _doc(package),
        "package": package,
        "operators": classes,
    }
    if package.auto_loading:
        namespace["mixin"] = {
            "input": Placeholder(str, help="input root (obs_input_path): a folder"),
            "output": Placeholder(str, help="output root (obs_output_path)"),
            "input_mode": InputByGlob(),
            "output_mode": OutputSameFormat(),
            "finish": FinishWhenAllExist(),
            **params,
        }
        built = type(package.name, (PerFileHooks, Task), namespace)
    else:
        namespace["mixin"] = {
            "input": Placeholder(str, help="input root (obs_input_path)"),
            "output": Placeholder(str, help="output root (obs_output_path)"),
            **params,
        }
        built = type(package.name, (WholeDatasetHooks, Task), namespace)
    built.__dispatch_adapter__ = adapter
    return built


# --- the stage -------------------------------------------------------------------------------


class _Failed:
    """One file's Process failure inside a torch batch: raised again when it is written."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ModelArtsStage(Stage):
    """PreProcess in `load`, Process in `compute`, PostProcess and the write in `write_row`."""

    style = "ModelArts operator"
    batched = False
    package_layout = "a ModelArts operator package holds program_package/process.py"

    @classmethod
    def claims_path(cls, path: str) -> bool:
        return os.path.isdir(path) and (
            os.path.isdir(os.path.join(path, PROGRAM)) or os.path.isfile(os.path.join(path, SPEC))
        )

    @classmethod
    def task_class_for_path(cls, path: str) -> type[Task]:
        return _package_task(os.path.realpath(path), cls)

    @classmethod
    def install_script(cls, task_cls: type[Task]) -> str | None:
        return task_cls.package.install_script  # type: ignore[attr-defined]

    def __init__(self, task: Task, force: bool = False) -> None:
        super().__init__(task, force)
        self._objects: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_objects"] = {}  # built again where they run, once per process
        return state

    def _operator(self, name: str) -> Any:
        obj = self._objects.get(name)
        if obj is None:
            cls = type(self.task).operators.get(name)  # type: ignore[attr-defined]
            if cls is None:
                return None
            args = operator_args(type(self.task).package, self.task.mixin)  # type: ignore[attr-defined]
            try:
                obj = self._objects[name] = cls(args)
            except Exception as exc:
                raise RuntimeError(f"{name}(args) failed: {type(exc).__name__}: {exc}") from exc
        return obj

    @property
    def _mode1(self) -> bool:
        return type(self.task).package.auto_loading  # type: ignore[attr-defined]

    def setup(self, device: Any = None) -> None:
        self.device = device
        # Every step handles DataFrames: import pandas once here, before a torch run forks
        # its DataLoader workers, rather than in each worker on its first file.
        import pandas  # noqa: F401

    def teardown(self) -> None:
        self._objects.clear()

    def warm_up(self) -> None:
        from dispatcher.execution import StageFailed

        try:
            self._operator("Process")
        except RuntimeError as exc:
            raise StageFailed(str(exc), traceback.format_exc()) from None

    def load(self, key: str, payload: Any) -> Row:
        """(key, DataFrame): the file read, then PreProcess; runs where data loads."""
        import pandas as pd

        if not self._mode1:
            return key, pd.DataFrame()
        from templates.adapters.modelarts_files import read_frame

        path = self.task.item_payload(key, payload)["input"]
        frame = read_frame(path, key)
        pre = self._operator("PreProcess")
        return key, (pre(frame) if pre is not None else frame)

    def _process(self, row: Row) -> Any:
        return self._operator("Process")(row[1])

    def compute(self, batch: list[Row], size: int) -> list[Any]:
        results: list[Any] = []
        for row in batch:  # one call per file; one file's failure fails that file only
            try:
                results.append(self._process(row))
            except Exception as exc:
                results.append(_Failed(exc))
        return results

    def write_row(self, i: int, size: int, row: Row, result: Any, outputs: dict[str, Any]) -> None:
        # Not batched: serial and mp come here straight from `load`, so Process runs here.
        frame = self._process(row) if result is None else result[i]
        if isinstance(frame, _Failed):
            raise frame.exc
        if not self._mode1:
            with open(outputs["output"], "w") as fh:
                json.dump({"package": type(self.task).package.root}, fh)  # type: ignore[attr-defined]
            return
        from templates.adapters.modelarts_files import write_frame

        post = self._operator("PostProcess")
        if post is not None:
            frame = post(frame)
        write_frame(frame, outputs["output"], row[0])
