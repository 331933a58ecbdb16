"""`torch`: a stage loaded in DataLoader workers, computed on a device (or several), written on a thread."""

from backbones.torch.backbone import TorchBackbone

__all__ = ["TorchBackbone"]
