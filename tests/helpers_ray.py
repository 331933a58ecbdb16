"""A real Ray cluster for the tests, started once per session: a head node and a second
worker node joined to it, both on 127.0.0.1, with explicit CPUs, a small object store, no
dashboard and no usage statistics. Runs join it through RAY_ADDRESS, as pods of a KubeRay
cluster do."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD_CPUS = 2
WORKER_CPUS = 1
OBJECT_STORE_BYTES = 80 * 1024**2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
"""Nothing sent off the machine; one host on 127.0.0.1, so no token shared between nodes."""


def ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(QUIET)
    return env


class RayCluster:
    """`ray start` twice (head, worker) in its own temp folder; `stop()` ends both."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ray = str(Path(sys.executable).with_name("ray"))
        if not Path(self.ray).exists():
            self.ray = shutil.which("ray") or "ray"

    def _start(self, *args: str) -> None:
        done = subprocess.run(
            [self.ray, "start", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
             f"--object-store-memory={OBJECT_STORE_BYTES}", *args],
            env=ray_env(), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def env(self) -> dict[str, str]:
        """What a run needs to join this cluster."""
        return {**QUIET, "RAY_ADDRESS": self.address}

    def start(self) -> RayCluster:
        self._start("--head", f"--port={self.port}", f"--num-cpus={HEAD_CPUS}",
                    "--include-dashboard=false", f"--temp-dir={self.folder}")  # fmt: skip
        self._start(f"--address={self.address}", f"--num-cpus={WORKER_CPUS}")
        deadline = time.monotonic() + 60
        while self.nodes() < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the second Ray node did not join")
            time.sleep(0.5)
        return self

    def nodes(self) -> int:
        code = (
            f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        done = subprocess.run([sys.executable, "-c", code], env=ray_env(),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        with contextlib.suppress(ValueError):
            return int(done.stdout.strip().splitlines()[-1])
        return 0

    def stop(self) -> None:
        subprocess.run([self.ray, "stop", "--force"], env=ray_env(), capture_output=True,
                       timeout=120)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)
