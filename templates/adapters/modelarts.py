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
the dispatcher writes after Process returned, beside the output root (`done_marker`),
naming the package: another package's marker is refused, not counted done.

A root may be a store URL (`s3://`, `obs://`): mode 1 goes through the template's object
item source (`templates/object_items.py`); mode 2 hands Process the URLs, which it reaches
with `moxing` as on the platform, and its marker is uploaded beside the output prefix.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from dispatcher.config.placeholders import Placeholder
from dispatcher.errors import UsageError
from dispatcher.items import Item, ItemSource
from dispatcher.outputs import (
    Claimed,
    DoneElsewhere,
    claimed_all,
    clear_abandoned,
    hidden_beside,
    is_staging_name,
    staged,
)
from dispatcher.outputs.records import PROVENANCE_PREFIX, provenance_beside
from dispatcher.stage import Row, Stage
from dispatcher.storage import transfer, urls
from dispatcher.task import Task
from templates.adapters.modelarts_package import (
    PROGRAM,
    SPEC,
    Package,
    operator_args,
    operator_classes,
    read_package,
    root_path,
)
from templates.input_modes import InputByGlob
from templates.items import TemplateItems
from templates.output_modes import FinishWhenAllExist, OutputSameFormat
from templates.parts import joined_ranges
from templates.sources import template_items

# --- mode 1: one item per input file -------------------------------------------------------


class PerFileHooks:
    """A mode-1 package's hooks: every file under the input root is an item (sorted keys),
    done when its output exists (the template item source, `templates/items.py`)."""

    mixin: Any

    def item_source(self) -> TemplateItems:
        return template_items(self)

    def validate(self) -> list[str]:
        problems = []
        for name in ("input", "output"):
            if not isinstance(self.mixin.get(name), str) or not self.mixin.get(name):
                problems.append(f"mixin '{name}': expected a path, got {self.mixin.get(name)!r}")
        modes = self.mixin["input_mode"].problems("input_mode")
        problems += modes + self.mixin["output_mode"].problems("output_mode")
        if problems:
            return problems
        # The item source checks its roots as it reads them (a store's as listed prefixes).
        return problems + self.item_source().root_problems()

    def input_roots(self) -> list[str]:
        return [self.item_source().read_root]

    def output_roots(self) -> list[str]:
        return [self.item_source().output_root]


# --- mode 2: one item, a done marker beside the output root ----------------------------------


def beside(root: str, suffix: str) -> str:
    """A hidden name beside `root` (`OUT/../.OUT<suffix>`); for a store URL the sibling
    key, by string (a prefix has no absolute path to resolve)."""
    if not urls.is_url(root):
        return hidden_beside(urls.local(root), suffix)
    url = urls.canonical(root)
    return f"{urls.parent(url)}/.{urls.name(url)}{suffix}"


def done_marker(output_root: str) -> str:
    """Where a mode-2 run records that Process returned: a hidden file beside the output
    root (`OUT/../.OUT.modelarts-done`), so the root holds only the operator's files, and
    any rerun finds it whatever its working or log directory."""
    return beside(output_root, ".modelarts-done")


def marker_text(package: Package) -> str:
    """What a done marker holds: the package that made the outputs (its folder and name)."""
    return json.dumps({"package": package.root, "name": package.name})


def read_marker(marker: str) -> str | None:
    """A done marker's text, None when there is none (for a URL, one GET: no listing of
    the prefix around it, which may hold a whole bucket)."""
    try:
        if urls.is_url(marker):
            return transfer.read_bytes(marker).decode("utf-8", errors="replace")
        with open(marker, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def marker_maker(marker: str) -> tuple[str, str] | None:
    """(name, folder) of the package a done marker says made the outputs; None when it
    names none. Markers first held only `{"package": FOLDER}`: the name is then the
    folder's, as `read_package` names a package."""
    try:
        text = read_marker(marker)
    except OSError:
        return None
    return None if text is None else _maker_of(text)


def _maker_of(text: str) -> tuple[str, str] | None:
    try:
        made = json.loads(text)
    except ValueError:
        return None
    if not isinstance(made, dict) or not isinstance(made.get("package"), str):
        return None
    root = made["package"]
    name = made.get("name")
    return (name if isinstance(name, str) else os.path.basename(root)), root


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


class _StoredMarker:
    """The marker of an output root in a store: written to local scratch, uploaded whole
    only when the block succeeds (after Process returned), and only if no other run
    uploaded one meanwhile (unless remade). A store has no byte-range claims."""

    def __init__(self, marker: str, key: str, remake: bool) -> None:
        from dispatcher.outputs.objects import StagedObject

        self.marker, self.key, self.remake = marker, key, remake
        self._stage = StagedObject(marker, create=not remake)

    def __enter__(self) -> dict[str, Any]:
        if not self.remake and read_marker(self.marker) is not None:
            raise DoneElsewhere(f"{self.key} was completed by another run")
        return {"output": self._stage.__enter__()}

    def __exit__(self, *exc: Any) -> None:
        from dispatcher.outputs.objects import ObjectExists

        try:
            self._stage.__exit__(*exc)
        except ObjectExists as exists:
            raise DoneElsewhere(f"{self.key} was completed by another run") from exists


class WholeDatasetItems(ItemSource):
    """A mode-2 package's one item (named after the package), done when its marker exists;
    its one output is the marker, staged and committed after Process returned."""

    def __init__(self, input: str, output: str, package: str) -> None:
        self.input, self.output, self.package = input, output, package
        self.marker = done_marker(output)
        self.in_store = urls.is_url(self.marker)

    def items(self) -> list[Item]:
        return [(self.package, None)]

    def payload(self, key: str, payload: Any) -> Any:
        return None

    def describe(self, key: str, payload: Any) -> dict[str, Any]:
        return {"input": self.input, "output": self.output}

    def origin(self) -> str:
        return "(a mode-2 package is one item)"

    def done_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        """Done when this package's marker is there. Another package's marker is refused:
        those outputs are no result of this package (`--force` remakes them)."""
        if self.in_store:
            text = read_marker(self.marker)
            done, maker = text is not None, _maker_of(text or "")
        else:
            done = os.path.lexists(self.marker)
            maker = marker_maker(self.marker) if done else None
        if done:
            self._refuse_another_maker(maker)
        return iter([done] * len(items))

    def _refuse_another_maker(self, maker: tuple[str, str] | None) -> None:
        if maker is not None and maker[0] == self.package:
            return  # other parameters are drift: the runner's note, as for every task
        made_by = (
            f"the operator package {maker[0]} ({maker[1]})"
            if maker is not None
            else "an operator package its done marker does not name"
        )
        raise UsageError(
            f"{self.output} was made by {made_by}, not by {self.package} "
            f"(done marker {self.marker}); --force remakes it with {self.package}"
        )

    def leftovers(self, items: Sequence[Item], found: Sequence[Item] = ()) -> list[str]:
        if self.in_store:
            return []  # the marker is staged in local scratch: nothing is left in the store
        folder, name = os.path.split(self.marker)
        with contextlib.suppress(OSError):
            return [
                os.path.join(folder, n)
                for n in os.listdir(folder)
                if n.startswith(name) and is_staging_name(n)
            ]
        return []

    def staged(self, key: str, remake: bool = False) -> _StagedMarker | _StoredMarker:
        if self.in_store:
            return _StoredMarker(self.marker, key, remake)
        return _StagedMarker(self.marker, key, remake)

    def claim_all(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        if self.in_store:
            return contextlib.nullcontext()  # the marker's upload is conditional instead
        return claimed_all([self.marker])

    def clear_abandoned(self, key: str) -> None:
        if not self.in_store:
            clear_abandoned(self.marker)


class WholeDatasetHooks:
    """A mode-2 package's hooks: the whole dataset is one item (`WholeDatasetItems`).

    A root may be a store URL: Process gets it as it is (operators reach a store through
    `moxing`, as on ModelArts), and the marker and run record go beside it in the store."""

    mixin: Any
    package: ClassVar[Package]

    def item_source(self) -> WholeDatasetItems:
        roots = root_path(self.mixin["input"]), root_path(self.mixin["output"])
        return WholeDatasetItems(*roots, self.package.name)

    def validate(self) -> list[str]:
        problems = []
        for name in ("input", "output"):
            if not isinstance(self.mixin.get(name), str) or not self.mixin.get(name):
                problems.append(f"mixin '{name}': expected a path, got {self.mixin.get(name)!r}")
        if problems:
            return problems
        source, out = root_path(self.mixin["input"]), root_path(self.mixin["output"])
        # A store root is checked by the runner (bucket, credentials, endpoint) with the others.
        if not urls.is_url(source) and not os.path.exists(source):
            problems.append(f"mixin 'input': input {source} does not exist")
        problems += _output_problems(out)
        if problems:
            return problems
        marker = done_marker(out)
        beside_folder = urls.parent(marker) if urls.is_url(marker) else os.path.dirname(marker)
        if _holds(source, beside_folder):
            problems.append(
                f"mixin 'output': the done marker {marker} would lie inside the input {source}"
            )
        return problems

    def input_roots(self) -> list[str]:
        return [root_path(self.mixin["input"])]

    def output_roots(self) -> list[str]:
        return [root_path(self.mixin["output"])]

    def provenance_path(self, root: str) -> str:
        # The root is the operator's to fill as it likes: the record goes beside, with the marker.
        if urls.is_url(root):
            return beside(root, f"{PROVENANCE_PREFIX}{type(self).__name__}")
        return provenance_beside(root, type(self).__name__)


def _output_problems(out: str) -> list[str]:
    """Why a mode-2 output root cannot take its done marker beside it."""
    if urls.is_url(out):
        if not urls.split(out)[1]:
            return [
                f"mixin 'output': {out} is a whole bucket: name a prefix in it "
                "(s3://BUCKET/OUT), beside which the done marker goes"
            ]
        return []
    if os.path.dirname(out) == out:
        return [f"mixin 'output': {out} has no parent folder for the done marker"]
    if os.path.exists(out) and not os.path.isdir(out):
        return [f"mixin 'output': output root {out} is not a folder"]
    return []


def _holds(root: str, path: str) -> bool:
    """Whether `path` is `root` or below it: prefixes by name, folders with links resolved;
    a store and a local folder never hold each other."""
    if urls.is_url(root) or urls.is_url(path):
        return urls.is_url(root) and urls.is_url(path) and urls.is_inside(root, path)
    inside, real = os.path.realpath(root), os.path.realpath(path)
    return real == inside or real.startswith(inside.rstrip("/") + "/")


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


class NoFrameReturned(TypeError):
    """A mode-1 class returned something other than a DataFrame (a forgotten `return`)."""


def returned_frame(name: str, result: Any) -> Any:
    """`result` when it is a DataFrame; else its file fails, naming the class: an output
    written from nothing would be counted done and skipped by every rerun."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    what = "None" if result is None else f"a {type(result).__name__}"
    raise NoFrameReturned(
        f"{name} returned {what}: return a DataFrame; an empty DataFrame drops every row"
    )


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
    def accepts_path(cls, path: str) -> bool:
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

    def split_rows(self, rows_per_item: int) -> str | None:
        """Mode 1 over row ranges: Process gets one range's rows at a time, and a file's
        output is joined from the ranges' results (`templates/range_items.py`)."""
        package = type(self.task).package  # type: ignore[attr-defined]
        if not self._mode1:
            cut: ItemSource | str = "is a mode-2 package (one item, the whole dataset)"
        elif not package.splittable:
            cut = "declares split-rows: false in its operator.yaml (it looks across rows)"
        else:
            cut = joined_ranges(self.task, self.source, rows_per_item)
        if isinstance(cut, str):
            return f"--rows-per-item: operator package {package.name} {cut}"
        self.source = cut
        return None

    def setup(self, device: Any = None) -> None:
        self.device = device
        if self.run_dir is not None:
            # The module operator code imports as `ma_utils` (the shims are on sys.path).
            importlib.import_module("ma_utils").RUN_DIR = self.run_dir
        # Every step handles DataFrames: import pandas once here, before a torch run forks
        # its DataLoader workers, rather than in each worker on its first file.
        import pandas  # noqa: F401

    def teardown(self) -> None:
        self._objects.clear()

    def warm_up(self) -> None:
        from dispatcher.execution.steps import StageFailed

        try:
            self._operator("Process")
        except RuntimeError as exc:
            raise StageFailed(str(exc), traceback.format_exc()) from None

    def load(self, key: str, payload: Any) -> Row:
        """(file key, DataFrame, range or None): the file (or one row range of it) read,
        then PreProcess; runs where data loads."""
        import pandas as pd

        if not self._mode1:
            return key, pd.DataFrame(), None
        from templates.adapters.modelarts_files import read_frame

        kwargs = self.source.payload(key, payload)
        part = kwargs.get("range")
        if part is None:
            frame = read_frame(kwargs["input"], key)
        else:
            from templates.adapters.modelarts_ranges import read_range_frame

            frame, key = read_range_frame(kwargs["input"], part), part.file
        return key, self._step("PreProcess", frame), part

    def _step(self, name: str, frame: Any) -> Any:
        """`name`'s result for `frame` (the frame itself where the package has no such class)."""
        obj = self._operator(name)
        if obj is None:
            return frame
        return returned_frame(name, obj(frame))

    def _process(self, row: Row) -> Any:
        if not self._mode1:  # mode 2 returns nothing: Process wrote the outputs itself
            return self._operator("Process")(row[1])
        return self._step("Process", row[1])

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
            with open(outputs["output"], "w", encoding="utf-8") as fh:
                fh.write(marker_text(type(self.task).package))  # type: ignore[attr-defined]
            return
        from templates.adapters.modelarts_files import write_frame

        frame, part = self._step("PostProcess", frame), row[2]
        if part is None:
            write_frame(frame, outputs["output"], row[0])
            return
        from templates.adapters.modelarts_ranges import write_range_frame

        write_range_frame(frame, outputs["output"], part)
