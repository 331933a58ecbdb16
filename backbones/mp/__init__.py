"""`mp`: a pool of worker processes, each running a stage over chunks of items."""

from backbones.mp.pool import ProcessPoolBackbone

__all__ = ["ProcessPoolBackbone"]
