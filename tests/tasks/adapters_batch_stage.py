"""A test adapter: a callable over a list of texts, run in batches."""

import functools
import json
import os

from dispatcher import Placeholder, Task, atomic_write
from dispatcher.execution.steps import StageFailed
from dispatcher.items import ItemSource
from dispatcher.stage import Stage


class BatchOperatorStage(Stage):
    style = "batch operator"
    batched = True
    default_batch_size = 4

    @classmethod
    def accepts(cls, obj):
        return bool(getattr(obj, "__batch_operator__", False))

    @classmethod
    def task_class(cls, obj):
        return _task_class(obj, cls)

    def setup(self, device=None):
        self.operator = self.task.operator()

    def teardown(self):
        pass

    def warm_up(self):
        if getattr(self.task.operator, "model_missing", False):
            raise StageFailed("load_model failed: the model is missing")

    def load(self, key, payload):
        with open(os.path.join(self.task.mixin.input, key)) as fh:
            return {"name": key, "text": fh.read()}

    def compute(self, batch, size):
        return self.operator([row["text"] for row in batch])

    def write_row(self, i, size, row, result, outputs):
        os.makedirs(self.task.mixin.output, exist_ok=True)
        path = os.path.join(self.task.mixin.output, row["name"] + ".json")
        with atomic_write(path) as tmp, open(tmp, "w") as fh:
            json.dump({"result": result[i], "batch": size, "pid": os.getpid()}, fh)


class TextFiles(ItemSource):
    def __init__(self, input, output):
        self.input, self.output = input, output

    def items(self):
        return [(name, None) for name in sorted(os.listdir(self.input))]

    def done_mask(self, items):
        done = set(os.listdir(self.output)) if os.path.isdir(self.output) else ()
        return [key + ".json" in done for key, _ in items]


@functools.cache
def _task_class(operator, adapter):
    class OperatorTask(Task):
        mixin = {"input": Placeholder(str), "output": Placeholder(str)}

        def item_source(self):
            return TextFiles(self.mixin.input, self.mixin.output)

    OperatorTask.operator = operator
    OperatorTask.__dispatch_adapter__ = adapter
    OperatorTask.__name__ = OperatorTask.__qualname__ = operator.__name__
    OperatorTask.__module__ = operator.__module__
    return OperatorTask
