"""The one way to run items (`run_batch` and its parts), stop signals, torch batches."""

from dispatcher.execution.steps import Outcome, StageFailed, run_batch, run_item

__all__ = ["Outcome", "StageFailed", "run_batch", "run_item"]
