"""Joining a Ray cluster for one run, or starting a local one that ends with it.

`--address auto` (or `HOST:PORT`, or `RAY_ADDRESS` in the environment, as KubeRay sets it
in its pods) joins a running cluster; without any, a local Ray starts for the run and
stops after it. A process that already called `ray.init` (a notebook) keeps its
connection. Ray's processes start with SIGINT and SIGTERM blocked, as `mp` workers do: a
Ctrl-C reaches the whole foreground process group, and only the driver decides what
stops; the driver's own handlers are put back after `ray.init`, which installs its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dispatcher.engines import UsageError, blocked_stop_signals

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
"""A local Ray's object store: items and reports are small; this keeps /dev/shm free."""
LISTEN_CHECK_SECONDS = 5.0
LINES_QUIET_SECONDS = 0.5
LINES_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class Resources:
    cpus: float
    gpus: float
    nodes: int
    largest_cpus: float = 0.0
    """The most CPUs one node has: an actor needing more is placed nowhere, ever."""
    largest_gpus: float = 0.0


def ray_module() -> Any:
    """`ray`, or a usage error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            f"--backbone ray needs Ray: pip install -e '.[ray]' ({error_text(exc)})"
        ) from None
    return ray


def error_text(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def chosen_address(address: str | None) -> str | None:
    """The cluster to join: `--address`, else `RAY_ADDRESS`; None: a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


class JoinFailed(Exception):
    """Ray could not be started or joined: the run cannot begin."""


@contextlib.contextmanager
def connected(address: str | None, num_cpus: int) -> Iterator[Resources]:
    """Ray for the duration of a run: joined at `address`, or local (stopped after)."""
    ray = ray_module()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    owned = not ray.is_initialized()
    if owned:
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR}
        if address is None:
            options.update(
                address="local", num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES
            )
        else:
            _check_listening(address)
            options["address"] = address
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with blocked_stop_signals():
                ray.init(**options)
        except Exception as exc:
            where = f"at {address}" if address else "on this machine"
            raise JoinFailed(f"cannot start or join Ray {where}: {error_text(exc)}") from None
        finally:
            for number, handler in handlers.items():
                if handler is not None:
                    signal.signal(number, handler)
    try:
        total = ray.cluster_resources()
        alive = [node.get("Resources") or {} for node in ray.nodes() if node.get("Alive")]
        yield Resources(
            float(total.get("CPU", 0)),
            float(total.get("GPU", 0)),
            len(alive),
            max((float(r.get("CPU", 0)) for r in alive), default=0.0),
            max((float(r.get("GPU", 0)) for r in alive), default=0.0),
        )
    finally:
        if owned:
            ray.shutdown()


def _check_listening(address: str) -> None:
    """A `HOST:PORT` nobody listens at fails now: Ray itself would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # `auto`, or a scheme Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=LISTEN_CHECK_SECONDS).close()
    except OSError as exc:
        raise JoinFailed(
            f"cannot join Ray at {address}: nothing answers there ({error_text(exc)})"
        ) from None


def route_actor_output(write_line: Callable[[str], None]) -> Callable[[], None]:
    """Lines the actors print (their stdout and stderr, which Ray brings to the driver) go
    beside the progress display, as an `mp` worker's do, not through Ray's own printer,
    which would tear it; lines of Ray's daemons (an actor's death, told by the run itself
    with its items) are left out. Returns what puts Ray's printer back. Ray's printer is
    internal: where it is not found, Ray prints as it does."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return lambda: None
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        return lambda: None

    last = [time.monotonic()]

    def write(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        if str(data.get("pid")).isdigit():  # an actor's process, not "raylet"
            last[0] = time.monotonic()
            for line in data.get("lines") or []:
                write_line(str(line))

    ray_worker.print_to_stdstream = write
    swapped = _swap_log_handler(write)

    def restore() -> None:
        # Ray brings the actors' lines a moment after they were written: the last ones
        # are waited for (until none came for LINES_QUIET_SECONDS, within a limit).
        deadline = time.monotonic() + LINES_WAIT_SECONDS
        last[0] = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last[0] < LINES_QUIET_SECONDS:
            time.sleep(0.05)
        ray_worker.print_to_stdstream = original
        swapped()

    return restore


def _swap_log_handler(write: Callable[..., None]) -> Callable[[], None]:
    """The handler that prints the actors' lines, replaced by `write` until the returned
    function is called."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return lambda: None
    before = list(dispatcher.handlers)
    for name, _ in before:
        if name == "ray_print_logs":
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, write)

    def restore() -> None:
        dispatcher.remove_handler("ray_print_logs")
        for name, handler in before:
            if name == "ray_print_logs":
                dispatcher.add_handler(name, handler)

    return restore
