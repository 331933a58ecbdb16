"""A local scratch folder per process: where outputs bound for a store are staged and
where inputs from a store are downloaded, each removed once its item is over.

Under `$DISPATCH_SCRATCH` (or the system's temporary folder), one folder per process,
named after its process id; a process removes its own at exit, and the first store
transfer of a later process removes those of processes that no longer exist (a kill -9).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator

from dispatcher.storage import client, urls

SCRATCH_VARIABLE = "DISPATCH_SCRATCH"
_PREFIX = "proc-"
_mine: dict[int, str] = {}


def _base() -> str:
    return os.environ.get(SCRATCH_VARIABLE) or os.path.join(
        tempfile.gettempdir(), f"dispatch-scratch-{os.getuid() if hasattr(os, 'getuid') else 0}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def folder() -> str:
    """This process's scratch folder, made on first use."""
    pid = os.getpid()
    path = _mine.get(pid)
    if path is None:
        base = _base()
        os.makedirs(base, exist_ok=True)
        _remove_dead(base)
        path = _mine[pid] = os.path.join(base, f"{_PREFIX}{pid}-{os.urandom(3).hex()}")
        os.makedirs(path)
        atexit.register(shutil.rmtree, path, True)
    return path


def _remove_dead(base: str) -> None:
    for entry in os.listdir(base):
        if not entry.startswith(_PREFIX):
            continue
        pid = entry[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)


_count = itertools.count()


def new_path(name: str) -> str:
    """A path new to this attempt in the scratch folder, ending like `name` (libraries
    that choose a format by extension write the right one)."""
    return os.path.join(folder(), f"{next(_count):x}-{name}")


def download(url: str) -> str:
    """A local copy of the object at `url`, in the scratch folder (the caller removes it)."""
    path = new_path(urls.name(url))
    try:
        client.filesystem(url).get_file(urls.bucket_path(url), path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def remove(path: str) -> None:
    """Remove a scratch file or folder, if it is still there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path to read `path` from: itself when local, a scratch copy of an object
    (removed after the block) when it is a URL."""
    if not urls.is_url(path):
        yield urls.local(path)
        return
    copy = download(path)
    try:
        yield copy
    finally:
        remove(copy)
