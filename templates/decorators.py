"""`cpu_task` and `torch_task`: a task's boilerplate written from declared modes.

```python
@cpu_task(
    input=Placeholder(str, help="input root"),
    output=Placeholder(str, help="output root"),
    input_mode=InputByExtensions(exts=[".mp4", ".mkv"]),
    output_mode=OutputSubfolder(files={"manifest": "clips.json"}),
    finish=FinishWhenExists("manifest"),
    clip_seconds=Placeholder(float, default=5.0),
)
class ClipTask(Task):
    def process(self, input, output, output_manifest, **item): ...
```

The decorator returns a subclass whose `mixin` declares `input`, `output`, the modes
(so any of their fields can be configured) and the extra keys; it supplies the hooks the
plan calls (enumerate, done mask from listings, staged outputs) and kagurazaka's
`generate_tasks` / `is_executed` (`is_each_executed` for torch tasks).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from dispatcher.outputs import (
    OutputOutsideRoot,
    claimed_all,
    clear_abandoned,
)
from dispatcher.placeholders import Placeholder
from dispatcher.sharding import HashShard, IndexShard, ShardSpec
from dispatcher.signatures import call_problems
from dispatcher.task import Item, Task, TorchTask
from templates.adapters.torch_task import compute_mode, overrides
from templates.input_modes import InputMode
from templates.output_modes import Finish, FinishWhenAllExist, OutputMode
from templates.runtime import Runtime
from templates.shards import HardShard

T = TypeVar("T", bound=type)

TEMPLATE_KEYS = ("input", "output", "input_mode", "output_mode", "finish", "shard", "hard_shard")
_RUNTIME = "_dispatch_runtime"


def _shard_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class TemplateHooks:
    """The plan's and the workers' hooks, answered from the task's declared modes."""

    mixin: Any

    def _runtime(self) -> Runtime:
        runtime = self.__dict__.get(_RUNTIME)
        if runtime is None:
            runtime = self.__dict__[_RUNTIME] = Runtime.from_mixin(self.mixin)
        return runtime

    def validate(self) -> list[str]:
        mixin = self.mixin
        problems: list[str] = []
        for name in ("input", "output"):
            if not isinstance(mixin.get(name), str) or not mixin.get(name):
                problems.append(f"mixin '{name}': expected a path, got {mixin.get(name)!r}")
        hard = mixin.get("hard_shard")
        if isinstance(hard, HardShard) and not problems:
            problems += hard.problems(
                "hard_shard", {"input": mixin["input"], "output": mixin["output"]}
            )
        input_mode, output_mode = mixin.get("input_mode"), mixin.get("output_mode")
        finish = mixin.get("finish") or FinishWhenAllExist()
        mode_problems = input_mode.problems("input_mode") + output_mode.problems("output_mode")
        if not mode_problems:
            mode_problems = finish.problems("finish", output_mode)
        problems += mode_problems
        for i, spec in enumerate(_shard_list(mixin.get("shard"))):
            where = (
                "mixin 'shard'"
                if not isinstance(mixin.get("shard"), list)
                else f"mixin 'shard.{i}'"
            )
            if isinstance(spec, (IndexShard, HashShard)):
                problems += spec.validate(where)
            else:
                problems.append(f"{where}: expected IndexShard or HashShard, got {spec!r}")
        if not problems:
            runtime = self._runtime()
            problems += input_mode.root_problems(runtime.input_value, runtime.input_root)
            out = runtime.output_root
            if os.path.exists(out) and not os.path.isdir(out):
                problems.append(f"mixin 'output': output root {out} is not a folder")
        return problems + super().validate()  # type: ignore[misc]

    def _arguments(self) -> tuple[list[str], list[str], str | None] | None:
        """What the modes pass: input names, output names, and what else per item (None
        while a mode is itself misconfigured: `validate` reports that)."""
        input_mode, output_mode = self.mixin.get("input_mode"), self.mixin.get("output_mode")
        if input_mode.problems("input_mode") or output_mode.problems("output_mode"):
            return None
        inputs, more = input_mode.argument_names()
        return inputs, output_mode.argument_names(), more

    def input_roots(self) -> list[str]:
        return [self._runtime().input_root]

    def output_roots(self) -> list[str]:
        return [self._runtime().output_root]

    def shard_specs(self) -> list[ShardSpec]:
        return _shard_list(self.mixin.get("shard")) + super().shard_specs()  # type: ignore[misc]

    def splits_itself(self) -> bool:
        hard = isinstance(self.mixin.get("hard_shard"), HardShard)
        return hard or super().splits_itself()  # type: ignore[misc]

    def iter_items(self) -> list[Item]:  # type: ignore[override]
        return self._runtime().items()

    def executed_mask(self, items: Sequence[Item]) -> Iterator[bool]:
        return self._runtime().done_mask(items)

    def final_outputs(self, keys: Sequence[str]) -> Iterable[str] | None:
        return self._runtime().final_outputs(keys)

    def leftovers(self, items: Sequence[Item]) -> list[str]:
        return self._runtime().leftovers(items)

    def item_payload(self, key: str, payload: Any) -> dict[str, Any]:
        return self._runtime().kwargs(key, payload)

    def failure_item(self, key: str, payload: Any) -> dict[str, Any]:
        return self._runtime().describe(key, payload)

    def item_source(self) -> str:
        runtime = self._runtime()
        return f"under {runtime.input_value} (input mode {runtime.input_mode!r})"

    def staged_outputs(
        self, key: str, remake: bool = False
    ) -> contextlib.AbstractContextManager[dict[str, Any]]:
        # Claimed from staging to commit; an item another run completed since the plan
        # looked is not made again (`DoneElsewhere`) unless `remake` (a forced run).
        # One check of its outputs, in the worker, per item.
        return self._runtime().staged(key, remake)

    def claim_outputs(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        runtime = self._runtime()
        finals = []
        for key in keys:
            # A key outside the root is never staged: its item fails with the reason.
            with contextlib.suppress(OutputOutsideRoot):
                finals.append(runtime.output_mode.final(runtime.output_root, key))
        return claimed_all(finals)

    def clear_abandoned(self, key: str) -> None:
        runtime = self._runtime()
        try:
            final = runtime.output_mode.final(runtime.output_root, key)
        except OutputOutsideRoot:
            return
        clear_abandoned(final)

    def generate_tasks(self) -> Iterator[dict[str, Any]]:
        """Each item's keyword arguments (without outputs), as kagurazaka tasks list them."""
        runtime = self._runtime()
        for key, payload in runtime.items():
            yield runtime.kwargs(key, payload)

    def _done_from_kwargs(self, item: dict[str, Any]) -> bool:
        runtime = self._runtime()
        return runtime.is_done(runtime.key_of(item))


class CpuTemplateHooks(TemplateHooks):
    def is_executed(self, **item: Any) -> bool:
        return self._done_from_kwargs(item)

    def argument_problems(self) -> list[str]:
        """`process(**inputs, **outputs)`, as the task adapter calls it."""
        args = self._arguments()
        if args is None:
            return []
        inputs, outputs, more = args
        where = f"{type(self).__name__}.process"
        return call_problems(
            where,
            self.process,
            inputs + outputs,
            "its template passes",
            more=more,  # type: ignore[attr-defined]
        )


class TorchTemplateHooks(TemplateHooks):
    def is_each_executed(self, **item: Any) -> bool:
        return self._done_from_kwargs(item)

    def argument_problems(self) -> list[str]:
        """`load_data(**inputs)`, then the compute calls the torch task adapter makes: inference
        and postprocessing get the loaded fields too, known only at run time."""
        args = self._arguments()
        if args is None:
            return []
        inputs, outputs, more = args
        task: Any = self
        cls, name = type(self), type(self).__name__
        problems = []
        if overrides(cls, "load_data"):
            problems += call_problems(
                f"{name}.load_data", task.load_data, inputs, "its template passes", more=more
            )
        loaded = "the fields of load_data" if more is None else f"{more}, the fields of load_data"
        mode = compute_mode(cls)
        if mode == "process":
            problems += call_problems(f"{name}.process", task.process, [], "", positional=2)
        elif mode is not None:
            problems += call_problems(
                f"{name}.inference", task.inference, inputs, "its template passes", 2, loaded
            )
            post = "postprocess_each" if mode == "postprocess_each" else "postprocess"
            problems += call_problems(
                f"{name}.{post}",
                getattr(task, post),
                inputs + outputs,
                "its template passes",
                2,
                f"{loaded} and inference" if post == "postprocess_each" else loaded,
            )
        return problems


def _declaration(
    cls: type,
    input: Any,
    output: Any,
    input_mode: InputMode,
    output_mode: OutputMode,
    finish: Finish | None,
    shard: Any,
    hard_shard: HardShard | None,
    extras: dict[str, Any],
) -> dict[str, Any]:
    if not isinstance(input_mode, InputMode):
        raise TypeError(
            f"input_mode must be an input mode such as InputByExtensions, got {input_mode!r}"
        )
    if not isinstance(output_mode, OutputMode):
        raise TypeError(
            f"output_mode must be OutputWithExtension or OutputSubfolder, got {output_mode!r}"
        )
    if finish is not None and not isinstance(finish, Finish):
        raise TypeError(f"finish must be FinishWhenAllExist or FinishWhenExists, got {finish!r}")
    if hard_shard is not None and not isinstance(hard_shard, HardShard):
        raise TypeError(f"hard_shard must be a HardShard, got {hard_shard!r}")
    declared: dict[str, Any] = {
        "input": input,
        "output": output,
        "input_mode": input_mode,
        "output_mode": output_mode,
        "finish": finish if finish is not None else FinishWhenAllExist(),
    }
    if shard is not None:
        declared["shard"] = shard
    if hard_shard is not None:
        declared["hard_shard"] = hard_shard
    inherited = getattr(cls, "mixin", None)
    if isinstance(inherited, dict):
        clash = sorted(set(inherited) & set(TEMPLATE_KEYS))
        if clash:
            raise TypeError(f"{cls.__name__}.mixin declares {clash}, which the template owns")
        declared.update(inherited)
    elif inherited is not None:
        raise TypeError(f"{cls.__name__}.mixin must be a dict to combine with a template")
    overlap = sorted(set(declared) & set(extras))
    if overlap:
        raise TypeError(f"{cls.__name__}: extra keys {overlap} are declared twice")
    declared.update(extras)
    return declared


def _input_help(input_mode: Any) -> str:
    # Checked as a mode by _declaration just after; until then, any object may come.
    return input_mode.input_help() if isinstance(input_mode, InputMode) else "input root"


def _template(hooks: type, base: type[Task]) -> Callable[..., Callable[[T], T]]:
    def decorator_factory(
        *,
        input: Any = None,
        output: Any = None,
        input_mode: InputMode,
        output_mode: OutputMode,
        finish: Finish | None = None,
        shard: IndexShard | HashShard | Sequence[IndexShard | HashShard] | None = None,
        hard_shard: HardShard | None = None,
        **extras: Any,
    ) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if base is Task and issubclass(cls, TorchTask):
                raise TypeError(f"{cls.__name__} is a TorchTask: decorate it with torch_task")
            if base is TorchTask and issubclass(cls, Task) and not issubclass(cls, TorchTask):
                raise TypeError(f"{cls.__name__} is a CPU Task: decorate it with cpu_task")
            declared = _declaration(
                cls,
                input if input is not None else Placeholder(str, help=_input_help(input_mode)),
                output if output is not None else Placeholder(str, help="output root"),
                input_mode,
                output_mode,
                finish,
                shard,
                hard_shard,
                extras,
            )
            bases = (hooks, cls) if issubclass(cls, base) else (hooks, cls, base)
            namespace = {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                "mixin": declared,
            }
            return type(cls.__name__, bases, namespace)  # type: ignore[return-value]

        return decorate

    return decorator_factory


cpu_task = _template(CpuTemplateHooks, Task)
cpu_task.__doc__ = """Decorate a Task: items, done checks and staged outputs from the declared modes.

`process(self, input, output, output_<name>..., **item)` receives the input path and
the staging paths to write; extra keyword arguments become mixin keys (`self.mixin.X`).
"""
torch_task = _template(TorchTemplateHooks, TorchTask)
torch_task.__doc__ = """Decorate a TorchTask with the same modes as `cpu_task`.

The task implements `load_data(self, input, **item)` (run in DataLoader workers) and
`postprocess_each(self, batch_idx, batch_size, output, output_<name>..., result, ...)`;
each item's postprocessing runs inside its `staged_outputs(key)`, on whichever backbone.
"""
