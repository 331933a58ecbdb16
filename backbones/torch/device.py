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

from dispatcher.engines import UsageError

KINDS = ("cuda", "npu", "mps", "cpu")
_SPEC = re.compile(r"^(auto|cpu|mps|cuda|npu)(?::(\d+))?$")
_LIST_TERM = re.compile(r"^(cpu|cuda|npu)(?::(all|\d+)(?:-(\d+))?)?$")
DEVICES_FORMS = "cuda:0,cuda:1 / cuda:all / npu:0-7 / cpu,cpu"


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


def parse_list(spec: str) -> list[tuple[str, int | None, int | None]]:
    """`--devices`: terms of (kind, first, last) with last None for one device and first
    None for `all`; checked without touching a device (a login node submits for a GPU
    node). One kind per run; a cuda or npu device listed twice is refused (cpu may repeat:
    several simulated devices)."""
    terms: list[tuple[str, int | None, int | None]] = []
    for raw in spec.split(","):
        text = raw.strip().lower()
        match = _LIST_TERM.match(text)
        if match is None:
            raise UsageError(f"--devices expects a list like {DEVICES_FORMS}, got '{spec}'")
        kind, first, last = match.groups()
        if kind == "cpu" and first is not None:
            raise UsageError(f"--devices: '{raw.strip()}': cpu takes no index (repeat it: cpu,cpu)")
        if first == "all" and last is not None:
            raise UsageError(f"--devices: '{raw.strip()}' is not a range (cuda:all or cuda:0-3)")
        if first is None and kind != "cpu":
            first = "0"
        low = None if first in (None, "all") else int(first)
        high = low if last is None else int(last)
        if low is not None and high is not None and high < low:
            raise UsageError(f"--devices: '{raw.strip()}' is an empty range")
        terms.append((kind, low if first != "all" else None, high if first != "all" else None))
    kinds = {kind for kind, _, _ in terms}
    if len(kinds) > 1:
        raise UsageError(f"--devices: one kind of device per run, got {', '.join(sorted(kinds))}")
    return terms


def resolve_list(spec: str) -> list[DeviceChoice]:
    """The devices `--devices` names, each checked to exist, in the order given."""
    terms = parse_list(spec)
    kind = terms[0][0]
    torch = _import_torch()
    if kind == "cpu":
        return [DeviceChoice("cpu") for _ in terms]
    if kind == "npu":
        import_torch_npu()
    available = _count(torch, kind)
    if not available:
        raise UsageError(f"--devices {spec}: no {kind} device is available to this process")
    indices: list[int] = []
    for _, low, high in terms:
        if low is None or high is None:
            indices.extend(range(available))
        else:
            if high >= available:
                raise UsageError(
                    f"--devices {spec}: only {available} {kind} device(s) visible "
                    f"(indices 0-{available - 1})"
                )
            indices.extend(range(low, high + 1))
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        named = ", ".join(f"{kind}:{i}" for i in repeated)
        raise UsageError(f"--devices {spec}: {named} listed more than once")
    return [DeviceChoice(kind, i) for i in indices]


def activate(choice: DeviceChoice) -> Any:
    """Make `choice` the current device of its kind and return the torch.device.

    torch_npu is imported first on an npu (it registers `torch.npu`), as a spawned device
    process must before its first NPU call.
    """
    import torch

    if choice.type == "npu":
        import_torch_npu()
    if choice.type in ("cuda", "npu") and choice.index is not None:
        getattr(torch, choice.type).set_device(choice.index)
    return torch.device(choice.name)
