"""Hard shards: a dataset already split into parts, one part per run.

`HardShard(shard=...)` replaces `{shard}` in the input and output roots, so one task
declaration serves `base/0/...`, `base/1/...`; the value is usually filled per job
(`--mixin hard_shard.shard=$SLURM_ARRAY_TASK_ID`). Soft shards (`IndexShard`,
`HashShard`, `--shard`) then split the chosen part further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatcher.config.placeholders import Placeholder


def _shard_placeholder() -> Placeholder:
    return Placeholder(
        str, help="which part of the dataset: replaces {shard} in the input and output roots"
    )


@dataclass
class HardShard:
    """Choose the input and output roots of one part: `{shard}` in them becomes `shard`."""

    shard: Any = field(default_factory=_shard_placeholder)
    token: str = "{shard}"

    def problems(self, where: str, roots: dict[str, Any]) -> list[str]:
        value = self.shard
        if value is None or isinstance(value, (bool, dict, list, tuple)) or value == "":
            return [f"mixin '{where}.shard': expected a part name or number, got {value!r}"]
        if not isinstance(self.token, str) or not self.token:
            return [f"mixin '{where}.token': expected the text to replace, got {self.token!r}"]
        if not any(isinstance(r, str) and self.token in r for r in roots.values()):
            return [
                f"mixin '{where}': neither {' nor '.join(roots)} contains {self.token} "
                f"(for example input=/data/{self.token}/raw)"
            ]
        return []

    def apply(self, root: str) -> str:
        return root.replace(self.token, str(self.shard))
