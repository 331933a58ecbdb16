"""Decorators that write a task's boilerplate from declared input and output modes.

```python
from dispatcher import Task, Placeholder
from templates import cpu_task, InputByExtensions, OutputWithExtension

@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".json"))
class Count(Task):
    def process(self, input, output):
        ...  # read `input`, write `output` (a staging path, committed on success)
```
See docs/templates.md for every mode.
"""

from templates.adapters import aiges_sdk
from templates.decorators import cpu_task, torch_task
from templates.input_modes import (
    InputByDepth,
    InputByExtensions,
    InputByGlob,
    InputFromJsonl,
    InputJsonlFiles,
    InputJsonlRows,
)
from templates.output_modes import (
    FinishWhenAllExist,
    FinishWhenExists,
    OutputPacked,
    OutputPath,
    OutputSameFormat,
    OutputSubfolder,
    OutputWithExtension,
)
from templates.shards import HardShard

aiges_sdk.install()  # wrapper files import `aiges`; the real SDK, when installed, comes first

__all__ = [
    "FinishWhenAllExist",
    "FinishWhenExists",
    "HardShard",
    "InputByDepth",
    "InputByExtensions",
    "InputByGlob",
    "InputFromJsonl",
    "InputJsonlFiles",
    "InputJsonlRows",
    "OutputPacked",
    "OutputPath",
    "OutputSameFormat",
    "OutputSubfolder",
    "OutputWithExtension",
    "cpu_task",
    "torch_task",
]
