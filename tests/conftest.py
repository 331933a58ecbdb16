"""Shared helpers: run a task (in this process through `dispatcher.run` or the command line
`dispatch_here`, or the real `dispatch` command in a subprocess) and read what it left:
outputs, run records, failures.

Task classes the tests run live in `tests/tasks/` (one module per theme), named by
`task_file(name)`; a test writes a task as a string only where the source itself is
under test."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_ray import RayCluster
from helpers_s3 import S3Endpoint, S3Server

from dispatcher.outputs.records import is_provenance_name

REPO = Path(__file__).resolve().parent.parent
TASKS = Path(__file__).resolve().parent / "tasks"
"""Task files the tests run (`tests/tasks/NAME.py`)."""


def task_file(name: str) -> Path:
    """`tests/tasks/NAME.py`: a task module the tests share (not copied: workers import it)."""
    path = TASKS / f"{name}.py"
    assert path.is_file(), path
    return path


def run_task(
    task: str | os.PathLike[str] | type,
    cls: str | None = None,
    mixin: dict[str, object] | None = None,
    *,
    log_dir: str | os.PathLike[str],
    **kwargs: object,
):
    """Run a task in this process through the Python API (`dispatcher.run`); returns its
    `RunResult`. `task` is a class, or a file with `cls` naming the class in it."""
    import dispatcher

    ref = task if cls is None else (str(task), cls)
    return dispatcher.run(ref, mixin or {}, log_dir=str(log_dir), **kwargs)


def start_dispatch(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    start_new_session: bool = False,
) -> subprocess.Popen[str]:
    """`python -m dispatcher ARGS` started, not waited for (to signal or kill it); with
    `start_new_session`, in a process group of its own (a signal to the group reaches its
    workers as a terminal's would)."""
    full_env = dict(os.environ)
    full_env.pop("SLURM_ARRAY_TASK_ID", None)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=start_new_session,
    )


def run_dirs(log_dir: str | os.PathLike[str], task_class: str | None = None) -> list[Path]:
    """The run directories under a log directory (of one task class), oldest first."""
    base = Path(log_dir) / task_class if task_class else Path(log_dir)
    return sorted(p.parent for p in base.rglob("run.json"))


def run_dir(log_dir: str | os.PathLike[str], task_class: str | None = None) -> Path:
    """The one run directory under a log directory (of one task class)."""
    (found,) = run_dirs(log_dir, task_class)
    return found


def run_record(log_dir: str | os.PathLike[str], task_class: str | None = None) -> dict:
    """The newest run record (`run.json`) under a log directory."""
    import json

    return json.loads((run_dirs(log_dir, task_class)[-1] / "run.json").read_text())


def failures(log_dir: str | os.PathLike[str], task_class: str | None = None) -> list[dict]:
    """The newest run's `failures.jsonl` rows (none when the file is absent)."""
    import json

    path = run_dirs(log_dir, task_class)[-1] / "failures.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def failure_reasons(log_dir: str | os.PathLike[str], task_class: str | None = None) -> dict:
    """The newest run's failed items: key -> error line (from `failures.jsonl`)."""
    return {row["key"]: row["error"] for row in failures(log_dir, task_class)}


def run_dispatch(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m dispatcher ARGS` as a user would run it; returns the finished process."""
    full_env = dict(os.environ)
    full_env.pop("SLURM_ARRAY_TASK_ID", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclasses.dataclass
class Dispatched:
    """What `dispatch_here` leaves: the attributes tests read from a `CompletedProcess`."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def dispatch_here(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> Dispatched:
    """`dispatch ARGS` run in this process (`dispatcher.cli.main`), for command lines where
    a separate process adds nothing: usage and configuration errors, `--plan`, help text,
    serial runs. The working directory, environment variables, standard streams and signal
    handlers are those of the call only, and restored after it."""
    from dispatcher.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        _dispatch_surroundings(cwd, env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Dispatched(["dispatch", *argv], code, out.getvalue(), err.getvalue())


_RUN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
"""The signals whose handlers a run installs (stop signals, the grace timer)."""


@contextlib.contextmanager
def _dispatch_surroundings(
    cwd: str | os.PathLike[str] | None, env: dict[str, str] | None
) -> Iterator[None]:
    """The directory, environment and signal handlers `run_dispatch`'s process would start
    with, put back as they were afterwards."""
    old_cwd = os.getcwd()
    old_env = dict(os.environ)
    handlers = {sig: signal.getsignal(sig) for sig in _RUN_SIGNALS}
    os.environ.pop("SLURM_ARRAY_TASK_ID", None)
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:  # None: not installed from Python, nothing to undo
                    signal.signal(sig, handler)


def backbone_params(names) -> list:
    """Backbone names as test parameters; `torch` skips where torch is not installed (as
    under scripts/pandas-floor.sh), so the rest of a file still runs there; `ray` runs on
    the session's Ray cluster (`on_ray`), marked slow."""
    no_torch = importlib.util.find_spec("torch") is None
    skip = pytest.mark.skipif(no_torch, reason="needs torch")
    no_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray")
    marks = {"torch": [skip], "ray": [no_ray, pytest.mark.slow]}
    return [pytest.param(n, marks=marks[n]) if n in marks else n for n in names]


def run_in_terminal(*args: object, columns: int = 120, stdout: bool = False) -> tuple[int, str]:
    """`python -m dispatcher ARGS` with its stderr (and `stdout`) on a pseudo-terminal of
    `columns` columns: (exit code, everything it wrote there)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SLURM_ARRAY_TASK_ID")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout else subprocess.DEVNULL,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the last writer closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode(errors="replace")


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every output under `root` (relative POSIX path -> bytes): every file but the record of
    which run made them (`.dispatch-run.CLASS`, tests/dispatcher/outputs/test_records.py checks it)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not is_provenance_name(p.name)
    }


def committed(folder: Path, pattern: str = "*") -> list[Path]:
    """The outputs committed in `folder` while a run may still be writing there: a staging
    file keeps its output's extension (`.a.dispatch-part-TOKEN.json`), and pathlib's glob
    matches hidden names, so those are left out."""
    return (
        sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
        if folder.exists()
        else []
    )


@pytest.fixture
def jobs():
    """Job ids a test submitted; whatever is left is cancelled at the end."""
    submitted: list[str] = []
    yield submitted
    if submitted:
        subprocess.run(["scancel", *submitted], capture_output=True, timeout=30)


@pytest.fixture
def dispatch():
    return run_dispatch


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300
    )


@contextlib.contextmanager
def installed_package(root: Path, dist: str) -> Iterator[None]:
    """The throwaway package at `root` pip-installed (offline, no build isolation) into
    this environment while the block runs, so its entry points are real; then removed."""
    done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", str(root))
    assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        removed = _pip("uninstall", "--yes", "--quiet", dist)
        assert removed.returncode == 0, removed.stderr


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def tmpfs(tmp_path: Path):
    """`mount(name, options)`: a tmpfs at tmp_path/name (a real full or read-only disk),
    unmounted at the end; the test skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        path = tmp_path / name
        _mount_tmpfs(path, options)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    """One S3 store for the whole session: moto's server in a subprocess (real HTTP, so its
    access log counts requests), or the outside store DISPATCH_TEST_S3_ENDPOINT names, with the
    keys of AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (`counts_requests` False). Skips where
    s3fs or moto is not installed."""
    why = "needs the test extra (pip install -e '.[test]')"
    pytest.importorskip("s3fs", reason=f"s3fs is not installed: {why}")
    pytest.importorskip("boto3", reason=f"boto3 is not installed: {why}")
    outside = os.environ.get("DISPATCH_TEST_S3_ENDPOINT")
    if outside:
        yield S3Endpoint.from_environment(outside)
        return
    for module in ("moto", "flask", "werkzeug"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (moto[server]): {why}")
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One Ray cluster for the whole session: a head and a second node joined to it, on
    127.0.0.1 (helpers_ray.py). Skips where ray is not installed."""
    pytest.importorskip("ray", reason="ray is not installed: needs the test extra")
    cluster = RayCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_ray(ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch) -> RayCluster:
    """Runs in this test join the session's cluster through RAY_ADDRESS, as the pods of a
    KubeRay cluster do."""
    for name, value in ray_cluster.env().items():
        monkeypatch.setenv(name, value)
    return ray_cluster


@pytest.fixture(autouse=True)
def _ray_parameter(request: pytest.FixtureRequest) -> None:
    """A test run with the backbone parameter `ray` (`backbone_params`) joins the cluster."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "ray" in callspec.params.values():
        request.getfixturevalue("on_ray")
