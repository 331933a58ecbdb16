"""The hooks a template task gets from its declared modes, answered by its item source.

`cpu_task` and `torch_task` (`templates/decorators.py`) put them under a task class; an
adapter that builds a template task for a class of another kind uses them directly. What
the plan and the workers ask (items, done checks, staged outputs) is the item source's
(`templates/items.py`, returned by `item_source()`); the hooks here are the user-facing
ones (validation, roots, shards, kagurazaka's `generate_tasks` / `is_executed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dispatcher.config.placeholders import Placeholder
from dispatcher.sharding import HashShard, IndexShard, ShardSpec
from dispatcher.signatures import call_problems
from templates.input_modes import InputMode
from templates.items import TemplateItems
from templates.output_modes import FinishWhenAllExist
from templates.shards import HardShard
from templates.sources import template_items


def _shard_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class TemplateHooks:
    """A template task's hooks, answered from its declared modes by its item source."""

    mixin: Any

    def item_source(self) -> TemplateItems:
        """The task's items and outputs from its modes (built once per process)."""
        return template_items(self)

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
        if not mode_problems and getattr(output_mode, "packs_rows", False):
            reads_rows = getattr(type(input_mode), "packed_items", InputMode.packed_items)
            if reads_rows is InputMode.packed_items:
                mode_problems.append(
                    f"mixin 'output_mode': {type(output_mode).__name__} packs the rows a row "
                    f"input mode reads (InputJsonlRows), not {type(input_mode).__name__}'s files"
                )
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
            problems += self.item_source().root_problems()
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
        return [self.item_source().read_root]

    def output_roots(self) -> list[str]:
        return [self.item_source().output_root]

    def shard_specs(self) -> list[ShardSpec]:
        return _shard_list(self.mixin.get("shard")) + super().shard_specs()  # type: ignore[misc]

    def splits_itself(self) -> bool:
        hard = isinstance(self.mixin.get("hard_shard"), HardShard)
        return hard or super().splits_itself()  # type: ignore[misc]

    def generate_tasks(self) -> Iterator[dict[str, Any]]:
        """Each item's keyword arguments (without outputs), as kagurazaka tasks list them."""
        source = self.item_source()
        for key, payload in source.items():
            yield source.payload(key, payload)

    def _done_from_kwargs(self, item: dict[str, Any]) -> bool:
        source = self.item_source()
        return source.is_done(source.key_of(item))


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


def template_class(base: type, like: type, input_mode: Any, output_mode: Any) -> type:
    """A CPU template task on `base` (its `mixin` holds the extra keys), named as `like`.

    What `cpu_task` makes, for an adapter building a task around a class of another kind
    (the task then has that class's name, module and documentation).
    """
    declared = {
        "input": Placeholder(str, help=input_mode.input_help()),
        "output": Placeholder(str, help="output root"),
        "input_mode": input_mode,
        "output_mode": output_mode,
        "finish": FinishWhenAllExist(),
        **base.mixin,
    }
    namespace = {
        "__module__": like.__module__,
        "__qualname__": like.__qualname__,
        "__doc__": like.__doc__ or base.__doc__,
        "mixin": declared,
    }
    return type(like.__name__, (CpuTemplateHooks, base), namespace)
