"""Execution engines: each one runs a plan's pending items a different way."""

from backbones.base import Backbone

__all__ = ["Backbone"]
