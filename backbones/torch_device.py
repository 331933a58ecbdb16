"""Which device the torch backbone runs on: parsing `--device` and checking it exists.

Checked while the run is configured, so a missing device or a missing `torch_npu` is a
one-line usage error (exit 2) before anything is written. torch and torch_npu are imported
here only when the torch backbone is chosen.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import UsageError

KINDS = ("cuda", "npu", "mps", "cpu")
_SPEC = re.compile(r"^(auto|cpu|mps|cuda|npu)(?::(\d+))?$")


@dataclass(frozen=True)
class DeviceChoice:
    """A resolved device: its type ('cuda', 'npu', 'mps', 'cpu') and index (None: the default)."""

    type: str
    index: int | None = None

    @property
    def name(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    @property
    def accelerated(self) -> bool:
        """Whether host memory pinning and non-blocking copies help (cuda and npu)."""
        return self.type in ("cuda", "npu")


def parse(spec: str) -> tuple[str, int | None]:
    """Split `cuda:1` into ('cuda', 1); a bad spelling is a usage error."""
    match = _SPEC.match(spec.strip().lower())
    if match is None or (match.group(1) in ("auto", "cpu", "mps") and match.group(2)):
        raise UsageError(f"--device expects auto, cpu, mps, cuda[:N] or npu[:N], got '{spec}'")
    return match.group(1), int(match.group(2)) if match.group(2) else None


def _import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise UsageError(
            f"the torch backbone needs torch, which cannot be imported ({exc}); "
            "install it with: pip install 'shard-dispatch[torch]'"
        ) from None


def import_torch_npu() -> Any:
    """Import torch_npu (it registers `torch.npu`); a clear usage error when it is missing."""
    if importlib.util.find_spec("torch_npu") is None:
        raise UsageError(
            "--device npu needs the torch_npu package (Ascend), which is not installed; "
            "install torch-npu matching your torch and CANN, or choose another --device"
        )
    try:
        return importlib.import_module("torch_npu")
    except Exception as exc:
        raise UsageError(
            f"--device npu: torch_npu failed to import: {type(exc).__name__}: {exc}"
        ) from None


def _count(torch: Any, kind: str) -> int:
    """How many devices of `kind` this process can use (0 when none or unsupported)."""
    try:
        if kind == "cuda":
            return torch.cuda.device_count() if torch.cuda.is_available() else 0
        if kind == "npu":
            npu = getattr(torch, "npu", None)
            return npu.device_count() if npu is not None and npu.is_available() else 0
        if kind == "mps":
            mps = getattr(torch.backends, "mps", None)
            return 1 if mps is not None and mps.is_available() else 0
    except Exception:
        return 0
    return 1


def resolve(spec: str) -> DeviceChoice:
    """The device `spec` names, checked to exist; `auto` is the first of cuda, npu, mps, cpu."""
    kind, index = parse(spec)
    torch = _import_torch()
    if kind == "auto":
        for candidate in KINDS:
            if candidate == "npu":
                try:
                    import_torch_npu()
                except UsageError:
                    continue
            if _count(torch, candidate):
                return DeviceChoice(candidate, 0 if candidate in ("cuda", "npu") else None)
        return DeviceChoice("cpu")
    if kind == "npu":
        import_torch_npu()
    available = _count(torch, kind)
    if not available:
        raise UsageError(f"--device {spec}: no {kind} device is available to this process")
    if index is not None and index >= available:
        raise UsageError(
            f"--device {spec}: only {available} {kind} device(s) visible (indices 0-{available - 1})"
        )
    if kind in ("cuda", "npu") and index is None:
        index = 0
    return DeviceChoice(kind, index)


def activate(choice: DeviceChoice) -> Any:
    """Make `choice` the current device of its kind and return the torch.device."""
    import torch

    if choice.type in ("cuda", "npu") and choice.index is not None:
        getattr(torch, choice.type).set_device(choice.index)
    return torch.device(choice.name)
