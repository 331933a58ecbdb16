"""Torch batches as dicts of fields: collating rows, slicing rows, moving them to a device.

Shared by the torch task adapter (which collates and slices its batches) and the torch
backbone (which moves them between host and device). Imports torch: imported only on
the code paths of torch tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data._utils.collate import default_collate


def collate_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate dict rows field by field; a field torch cannot stack stays a list.

    Tensors of one shape stack, numbers become tensors, strings (paths) stay lists of
    strings; tensors of different shapes or `None`s stay a list with one entry per row.
    """
    names = list(rows[0])
    for row in rows[1:]:
        if list(row) != names and set(row) != set(names):
            raise ValueError(f"rows have different fields: {sorted(names)} vs {sorted(row)}")
    batch: dict[str, Any] = {}
    for name in names:
        values = [row[name] for row in rows]
        try:
            batch[name] = default_collate(values)
        except (TypeError, RuntimeError, ValueError):
            batch[name] = values
    return batch


def to_device(value: Any, device: Any, non_blocking: bool) -> Any:
    """Copy every tensor inside `value` (dicts, lists, tuples) to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device, non_blocking) for v in value)
    return value


def has_device_tensors(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.device.type != "cpu"
    if isinstance(value, Mapping):
        return any(has_device_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_device_tensors(v) for v in value)
    return False


def row_of(value: Any, i: int) -> Any:
    """Row `i` of a batched value: a tensor row, a list entry, a dict of rows; else as is."""
    if isinstance(value, torch.Tensor):
        return value[i] if value.dim() > 0 else value
    if isinstance(value, Mapping):
        return {k: row_of(v, i) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return value[i]
    return value


def select_rows(value: Any, keep: list[int]) -> Any:
    """The rows `keep` of a batched value (tensors, lists, dicts of them)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return value
        return value.index_select(0, torch.tensor(keep, dtype=torch.long, device=value.device))
    if isinstance(value, Mapping):
        return {k: select_rows(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(value[i] for i in keep)
    return value


def batch_length(batch: Mapping[str, Any]) -> int:
    """The number of rows of a dict batch (the first field with a length)."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, (list, tuple)):
            return len(value)
        if isinstance(value, Mapping) and value:
            return batch_length(value)
    raise ValueError("cannot tell the batch size: no field of the batch has a length")
