"""shard-dispatch: run a task over every item of a dataset, in shards, skipping what is done."""

from dispatcher.errors import UsageError
from dispatcher.outputs import atomic_write
from dispatcher.placeholders import MIXIN_PLACEHOLDER, Mixin, Placeholder
from dispatcher.sharding import HashShard, IndexShard
from dispatcher.task import Task, TorchTask

__all__ = [
    "MIXIN_PLACEHOLDER",
    "HashShard",
    "IndexShard",
    "Mixin",
    "Placeholder",
    "Task",
    "TorchTask",
    "UsageError",
    "atomic_write",
]
__version__ = "0.1.0"
