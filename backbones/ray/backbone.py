"""`ray`: the plan's pending items on a pool of Ray actors, on one machine or a cluster.

The driver (this process) plans as every engine does and alone reports: one progress
display, summary and run record. Each actor sets the stage up once (its model loaded
there) and runs chunks of items, committing their outputs itself with the same
staging, claims and finish checks as every engine, so the output roots must be storage
every node sees (a shared filesystem, or an object-store root). See docs/ray.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from backbones.base import Backbone, add_retries_option, positive_float, positive_int
from backbones.ray.cluster import (
    JoinFailed,
    chosen_address,
    connected,
    ray_module,
    route_actor_output,
)
from dispatcher.engines import RunContext, Stage, Task, available_cpus

if TYPE_CHECKING:
    from backbones.ray.cluster import Resources


class RayBackbone(Backbone):
    name = "ray"
    summary = (
        "A pool of Ray actors, on this machine or a Ray cluster (--address auto): setup() "
        "once per actor, items in chunks; an actor that dies costs only its items."
    )

    @classmethod
    def incompatibility(cls, stage_cls: type[Stage], task_cls: type[Task]) -> str | None:
        if getattr(stage_cls, "expands_items", False) and stage_cls.uses_device:
            return "its rows are batched across items: run it with --backbone torch or serial"
        return None

    @classmethod
    def add_arguments(cls, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(
            "--address",
            default=None,
            metavar="ADDRESS",
            help="the Ray cluster to join: auto (the one this machine belongs to) or HOST:PORT "
            "(default: RAY_ADDRESS where it is set, else a local Ray started for the run and "
            "stopped after it)",
        )
        parser.add_argument(
            "--num-actors",
            type=positive_int,
            default=None,
            metavar="N",
            help="actors running items (default: the cluster's CPUs over --cpus-per-actor; "
            "for a device task, its GPUs over --gpus-per-actor where it has GPUs)",
        )
        parser.add_argument(
            "--cpus-per-actor",
            type=positive_float,
            default=1.0,
            metavar="N",
            help="CPUs Ray reserves for each actor (default: 1)",
        )
        parser.add_argument(
            "--gpus-per-actor",
            type=positive_float,
            default=None,
            metavar="N",
            help="GPUs Ray reserves for each actor of a device task (default: 1 where the "
            "cluster has GPUs, else none: the task computes on the CPU)",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            metavar="N",
            help="items per batch of a batched task (default: the task style's)",
        )
        add_retries_option(parser, "raised, its actor died", " (in a later chunk)")

    @classmethod
    def check_options(cls, options: argparse.Namespace) -> None:
        if importlib.util.find_spec("ray") is None:
            ray_module()  # the usage error that says how to install it

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__(options)
        self.check_options(options)

    def run(self, context: RunContext) -> None:
        if not context.items:
            return
        ray = ray_module()
        address = chosen_address(self.options.address)
        try:
            with connected(address, available_cpus()) as resources:
                restore = route_actor_output(context.reporter.write_line)
                try:
                    self._run(ray, context, resources, address)
                finally:
                    restore()
        except JoinFailed as exc:
            context.reporter.abort(f"ray: {exc}")

    def _run(
        self, ray: Any, context: RunContext, resources: Resources, address: str | None
    ) -> None:
        from backbones.ray.actor import actor_class, forwarded_env
        from backbones.ray.driver import Driver

        options, stage = self.options, context.stage
        gpus = options.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if stage.uses_device and resources.gpus else 0.0
        if not stage.uses_device:
            gpus = 0.0  # a CPU task holds no GPU
        unplaceable = _unplaceable(options.cpus_per_actor, gpus, resources)
        if unplaceable is not None:
            context.reporter.abort(f"ray: {unplaceable}")
            return
        count = options.num_actors
        if count is None:
            per = resources.gpus / gpus if gpus else resources.cpus / options.cpus_per_actor
            count = int(per)
        batch = options.batch_size or stage.default_batch_size if stage.batched else None
        device = ("cuda" if gpus else "cpu") if stage.uses_device else None
        driver = Driver(
            ray,
            context,
            actor_class(options.cpus_per_actor, gpus, forwarded_env(dict(os.environ))),
            max(1, count),
            os.getcwd(),
            device,
            options.retries,
            batch,
        )
        context.reporter.record["ray"] = {  # what the options resolved to on this cluster
            "address": address,
            "nodes": resources.nodes,
            "actors": driver.count,
            "cpus_per_actor": options.cpus_per_actor,
            "gpus_per_actor": gpus,
        }
        nodes = f"{resources.nodes} node{'s' * (resources.nodes != 1)}"
        context.reporter.note(
            f"ray: {len(context.items)} items on {driver.count} actors ({nodes}, "
            f"{'cluster at ' + address if address else 'a local Ray for this run'})"
        )
        driver.run()


def _unplaceable(cpus: float, gpus: float, resources: Resources) -> str | None:
    """Why no node of the cluster can ever hold an actor: Ray would wait for one forever."""
    if cpus > resources.largest_cpus:
        return (
            f"--cpus-per-actor {cpus:g}: no node of the cluster has that many CPUs "
            f"(the largest has {resources.largest_cpus:g})"
        )
    if gpus > resources.largest_gpus:
        return (
            f"--gpus-per-actor {gpus:g}: no node of the cluster has that many GPUs "
            f"(the largest has {resources.largest_gpus:g})"
        )
    return None
