"""A local scratch folder per run: where outputs bound for a store are staged and where
inputs from a store are downloaded, each removed once its item is over.

Under `$DISPATCH_SCRATCH` (or the system's temporary folder), one folder per run, named
after the process that made it; its worker processes (and theirs: a DataLoader's) share
it through the environment, so an input downloaded where data loads is removed where its
item is written. The process that made it removes it at exit, and the next run removes
those whose process no longer exists (a kill -9).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator

from dispatcher.environment import process_alive
from dispatcher.storage import client, urls

SCRATCH_VARIABLE = "DISPATCH_SCRATCH"
RUN_FOLDER_VARIABLE = "DISPATCH_SCRATCH_FOLDER"
"""The run's scratch folder, inherited by every process it starts."""
_PREFIX = "proc-"
_mine: dict[int, str] = {}


def _base() -> str:
    return os.environ.get(SCRATCH_VARIABLE) or os.path.join(
        tempfile.gettempdir(), f"dispatch-scratch-{os.getuid() if hasattr(os, 'getuid') else 0}"
    )


def folder() -> str:
    """The run's scratch folder, made on first use by the first process that needs it."""
    pid = os.getpid()
    path = _mine.get(pid)
    if path is not None:
        return path
    inherited = os.environ.get(RUN_FOLDER_VARIABLE)
    if inherited and os.path.isdir(inherited):
        path = inherited
    else:
        base = _base()
        os.makedirs(base, exist_ok=True)
        _remove_dead(base)
        path = os.path.join(base, f"{_PREFIX}{pid}-{os.urandom(3).hex()}")
        os.makedirs(path)
        os.environ[RUN_FOLDER_VARIABLE] = path
        atexit.register(_remove_own, path, pid)
    _mine[pid] = path
    return path


def start_run() -> None:
    """A new run's own scratch folder, even where the process that started this one had
    one: two runs never share downloads (made on first use)."""
    _mine.clear()
    os.environ.pop(RUN_FOLDER_VARIABLE, None)


def _remove_own(path: str, pid: int) -> None:
    if os.getpid() == pid:  # a forked child inherits the handler, not the folder
        shutil.rmtree(path, ignore_errors=True)


def _remove_dead(base: str) -> None:
    for entry in os.listdir(base):
        if not entry.startswith(_PREFIX):
            continue
        pid = entry[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)


_count = itertools.count()


def new_path(name: str) -> str:
    """A path new to this attempt in the scratch folder, ending like `name` (libraries
    that choose a format by extension write the right one)."""
    return os.path.join(folder(), f"{os.getpid()}-{next(_count):x}-{name}")


def input_path(key: str, url: str) -> str:
    """Where the input of item `key` is downloaded: the same in every process of the run,
    so the one that writes the item removes it (`remove(input_path(...))`)."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return os.path.join(folder(), f"in-{digest}", urls.name(url))


def download(url: str, path: str | None = None) -> str:
    """A local copy of the object at `url`, at `path` or a new scratch path (the caller
    removes it)."""
    path = path or new_path(urls.name(url))
    os.makedirs(os.path.dirname(path), exist_ok=True)
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
