"""Which item source a template task gets: `TemplateItems` over local folders,
`ObjectTemplateItems` where a root is in an object store; built once per process."""

from __future__ import annotations

from typing import Any

from dispatcher.storage.urls import is_url
from templates.items import TemplateItems

SOURCE = "_dispatch_items"
"""Where a template task keeps its item source (built once per process from its mixin)."""


def template_items(task: Any) -> TemplateItems:
    """The item source of a template task, built from its filled `mixin` on first use."""
    source = task.__dict__.get(SOURCE)
    if source is None:
        mixin = task.mixin
        in_store = is_url(mixin["input"]) or is_url(mixin["output"])
        cls = TemplateItems
        if in_store:  # the store's client and commit protocol load only for a store root
            from templates.object_items import ObjectTemplateItems

            cls = ObjectTemplateItems
        source = cls.from_mixin(mixin)
        if in_store and getattr(task, "input_as_url", False):
            source.download = False  # an object's input is handed over as its URL
        task.__dict__[SOURCE] = source
    return source
