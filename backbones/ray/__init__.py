"""The `ray` backbone: Ray actors on one machine or a cluster (the `ray` extra)."""

from backbones.ray.backbone import RayBackbone

__all__ = ["RayBackbone"]
