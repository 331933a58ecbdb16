"""Adapters: each task style as a `dispatcher.stage.Stage`, the one thing backbones run.

`task` runs plain and template `Task`s, `torch_task` runs `TorchTask`s; the core asks
them, in the order of `dispatcher.stage.BUILTIN`, which one accepts a class.
"""
