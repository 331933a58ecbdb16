"""A real Ray cluster for the tests, started once per session: a head node and a second
worker node joined to it, both on 127.0.0.1, with explicit CPUs, a small object store, no
dashboard and no usage statistics. Runs join it through RAY_ADDRESS, as pods of a KubeRay
cluster do."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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
    """`ray start` twice (head, worker) in its own temp folder; `stop()` ends both, and
    nothing else: another session's cluster on the same machine goes on (`ray stop` would
    end every Ray of the machine)."""

    def __init__(self, head_cpus: int = HEAD_CPUS, worker_cpus: int = WORKER_CPUS) -> None:
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
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
        self._start("--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                    "--include-dashboard=false", f"--temp-dir={self.folder}")  # fmt: skip
        if not self.worker_cpus:
            return self
        self._start(f"--address={self.address}", f"--num-cpus={self.worker_cpus}")
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

    def processes(self) -> list[int]:
        """This cluster's daemons: those whose command line names its folder or port."""
        marks = (str(self.folder), f"127.0.0.1:{self.port}", f"--gcs_server_port={self.port}")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                line = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if any(mark in line for mark in marks):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """SIGKILL to this cluster's daemons, as `ray stop --force` sends to every Ray of
        the machine (their workers and agents end with them)."""
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            for pid in self.processes():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        shutil.rmtree(self.folder, ignore_errors=True)
