"""A stand-in for Ascend's torch_npu: registers the `npu` device name and `torch.npu`."""

import os
import types

import torch

torch.utils.rename_privateuse1_backend("npu")
npu = types.ModuleType("torch.npu")
npu.is_available = lambda: True
npu.device_count = lambda: int(os.environ.get("FAKE_NPU_COUNT", "1"))


def set_device(index):
    with open(os.environ["FAKE_NPU_LOG"], "a") as fh:
        fh.write(f"set_device {index}\n")


npu.set_device = set_device
npu.current_device = lambda: 0
torch._register_device_module("npu", npu)
