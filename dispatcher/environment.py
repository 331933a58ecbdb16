"""Everything read from the process environment, in one place: scheduler and CPUs.

SLURM array jobs and torchrun launches both say "you are shard I of N"; this module turns
them into one answer so the rest of the code never reads scheduler variables itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardPosition:
    index: int
    count: int
    source: str


def detect_shard(env: Mapping[str, str] | None = None) -> ShardPosition:
    """This process's shard from SLURM array or torchrun variables; one shard without either.

    Raises ValueError when the variables are present but inconsistent.
    """
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env:
        task_id = _int(env, "SLURM_ARRAY_TASK_ID")
        count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        first = _int(env, "SLURM_ARRAY_TASK_MIN", 0)
        step = _int(env, "SLURM_ARRAY_TASK_STEP", 1)
        last = _int(env, "SLURM_ARRAY_TASK_MAX", first + (count - 1) * step)
        if step < 1 or (last - first) // step + 1 != count or (last - first) % step:
            raise ValueError(
                f"SLURM array ids {first}-{last} (step {step}) are not {count} evenly spaced ids; "
                "use --shard I/N explicitly"
            )
        if (task_id - first) % step:
            raise ValueError(f"SLURM_ARRAY_TASK_ID={task_id} is not on the array's step {step}")
        return ShardPosition((task_id - first) // step, count, "slurm array")
    if "RANK" in env and "WORLD_SIZE" in env:
        return ShardPosition(_int(env, "RANK"), _int(env, "WORLD_SIZE"), "torchrun")
    return ShardPosition(0, 1, "none")


def slurm_array_task(env: Mapping[str, str] | None = None) -> str | None:
    """`SLURM_ARRAY_TASK_ID` when this process is a task of a SLURM array job."""
    env = os.environ if env is None else env
    return env.get("SLURM_ARRAY_TASK_ID") or None


def slurm_job(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The SLURM array job and task this process runs as (`dispatch status` finds each
    shard's record by them), or None outside an array task."""
    env = os.environ if env is None else env
    task = slurm_array_task(env)
    if task is None:
        return None
    return {
        "job": env.get("SLURM_JOB_ID", ""),
        "array_job": env.get("SLURM_ARRAY_JOB_ID", ""),
        "array_task": task,
    }


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"{name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def available_cpus(env: Mapping[str, str] | None = None) -> int:
    """CPUs this process may use: SLURM's allocation, the cgroup quota and the affinity mask."""
    env = os.environ if env is None else env
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    slurm = env.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        count = min(count, int(slurm))
    quota = _cgroup_cpu_quota()
    if quota:
        count = min(count, quota)
    return max(1, count)


def _cgroup_cpu_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return max(1, int(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota_us = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period_us = int(fh.read())
        if quota_us > 0:
            return max(1, quota_us // period_us)
    except (OSError, ValueError):
        pass
    return None


def process_alive(pid: int) -> bool:
    """Whether a process of this host with `pid` runs (one that is not ours counts): how a
    run tells a killed process's scratch, staging or claim from a live one's.

    A zombie is dead: a killed worker whose parent died too waits as one for as long as
    nobody reaps it, which in a container whose first process reaps nothing is forever.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True  # no /proc here (or gone since): the signal check stands
    # "PID (COMMAND) STATE ...": the command may hold spaces and parentheses.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
