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

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dispatcher.config.placeholders import Placeholder
from dispatcher.sharding import HashShard, IndexShard
from dispatcher.signatures import call_problems
from dispatcher.task import Task, TorchTask
from templates.adapters.torch_task import compute_mode, overrides
from templates.hooks import CpuTemplateHooks, TemplateHooks
from templates.input_modes import InputMode
from templates.output_modes import Finish, FinishWhenAllExist, OutputMode
from templates.shards import HardShard

T = TypeVar("T", bound=type)

TEMPLATE_KEYS = ("input", "output", "input_mode", "output_mode", "finish", "shard", "hard_shard")


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
each item's postprocessing runs inside its staged outputs (`item_source().staged(key)`), on
whichever backbone.
"""
