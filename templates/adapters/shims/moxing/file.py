"""`mox.file` over local paths and object-store URLs (`obs://bucket/key`, `s3://...`).

Local paths behave as they always did. A URL is served by the dispatcher's store client
(`dispatcher.storage`), so an operator reaches the store with the run's own endpoint,
credentials and per-root options. "Folders" in a store are key prefixes: `make_dirs` on a
URL does nothing, `list_directory` lists what is directly under a prefix. Writes to a URL
upload a whole object (`write`, `copy`, a `File` opened for writing, on close), so no
reader ever sees part of one. The store client (s3fs) is imported only when a URL is used.
"""

from __future__ import annotations

import functools
import glob as _glob
import io
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dispatcher.storage import urls

COPY_THREADS = 16
"""Objects copied at once by `copy_parallel` (moxing's own default)."""


def _where(path: Any) -> str:
    """`path` as a local path or a store URL; any other scheme is refused."""
    path = urls.local(os.fspath(path))
    if "://" in path and not urls.is_url(path):
        raise ValueError(
            f"moxing stand-in: only local paths and s3:// or obs:// URLs are supported, "
            f"got {path!r}"
        )
    return path


def _in_one_line(func: Callable[..., Any]) -> Callable[..., Any]:
    """A store failure that is not about the object itself (no credentials, endpoint down)
    as one OSError naming the URL, as the dispatcher says it, not a botocore traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (OSError, ValueError, TypeError):
            raise
        except Exception as exc:
            named = [getattr(a, "name", a) for a in (*args, *kwargs.values())]
            url = next((a for a in named if urls.is_url(a)), None)
            if url is None:
                raise
            from dispatcher.storage import client

            raise client.StorageError(client.error_line(exc, url)) from exc

    return wrapper


def _fs(url: str) -> tuple[Any, str]:
    """The filesystem serving `url` and its `bucket/key` path."""
    from dispatcher.storage import client

    return client.filesystem(url), urls.bucket_path(url)


# --- asking --------------------------------------------------------------------------------


@_in_one_line
def exists(path: str) -> bool:
    """Whether a file, a folder or (for a URL) an object or a non-empty prefix is there."""
    path = _where(path)
    if not urls.is_url(path):
        return os.path.exists(path)
    fs, key = _fs(path)
    return bool(fs.exists(key))


@_in_one_line
def is_directory(path: str) -> bool:
    """A local folder, or a URL with objects below it (a prefix) or a bucket."""
    path = _where(path)
    if not urls.is_url(path):
        return os.path.isdir(path)
    return _lists_anything(path, limit=1)


@_in_one_line
def list_directory(path: str, recursive: bool = False) -> list[str]:
    """Names in `path` (sorted; for a URL, the objects and prefixes directly under it);
    with `recursive`, the POSIX paths of the files below it, relative to it."""
    path = _where(path)
    if urls.is_url(path):
        return _list_url(path, recursive)
    if not recursive:
        return sorted(os.listdir(path))
    found = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        rel = os.path.relpath(folder, path)
        found += [name if rel == "." else os.path.join(rel, name) for name in sorted(files)]
    return sorted(found)


def _list_url(url: str, recursive: bool) -> list[str]:
    if recursive:
        from dispatcher.storage.listing import list_prefix

        found = sorted(list_prefix(url))
    else:
        found = _names_under(url)
    if not found and not _lists_anything(url, limit=1):
        raise FileNotFoundError(f"{url}: nothing is stored under this prefix")
    return found


def _names_under(url: str) -> list[str]:
    prefix = urls.split(url)[1]
    start = len(prefix) + 1 if prefix else 0
    names: set[str] = set()
    from dispatcher.storage.listing import pages

    for page in pages(url, delimiter="/"):
        names.update(entry["Key"][start:] for entry in page.get("Contents", ()))
        names.update(
            entry["Prefix"][start:].rstrip("/") for entry in page.get("CommonPrefixes", ())
        )
    names.discard("")  # a "folder" placeholder object names the prefix itself
    return sorted(names)


def _lists_anything(url: str, limit: int) -> bool:
    from dispatcher.storage.listing import pages

    page = next(pages(url, delimiter="/", limit=limit))
    return bool(page.get("Contents") or page.get("CommonPrefixes"))


@_in_one_line
def glob(pattern: str) -> list[str]:
    """Paths matching `pattern` (`**` crosses folders); URLs for a URL pattern."""
    pattern = _where(pattern)
    if not urls.is_url(pattern):
        return sorted(_glob.glob(pattern, recursive=True))
    fs, key = _fs(pattern)
    scheme = pattern.split("://", 1)[0]
    return sorted(f"{scheme}://{found}" for found in fs.glob(key))


# --- changing ------------------------------------------------------------------------------


def make_dirs(path: str) -> None:
    """Make a local folder; nothing for a URL (a prefix exists with its first object)."""
    path = _where(path)
    if not urls.is_url(path):
        os.makedirs(path, exist_ok=True)


mk_dir = make_dirs


@_in_one_line
def remove(path: str, recursive: bool = False) -> None:
    """Remove a file or object; a folder or prefix only with `recursive`."""
    path = _where(path)
    if urls.is_url(path):
        _remove_url(path, recursive)
    elif os.path.isdir(path) and not os.path.islink(path):
        if not recursive:
            raise IsADirectoryError(f"{path} is a directory: pass recursive=True")
        shutil.rmtree(path)
    else:
        os.remove(path)


def _remove_url(url: str, recursive: bool) -> None:
    from dispatcher.storage import transfer
    from dispatcher.storage.listing import list_prefix

    fs, path = _fs(url)
    if fs.isfile(path):
        transfer.delete(url)
        return
    below = list_prefix(url)
    if not below and not _lists_anything(url, limit=1):
        raise FileNotFoundError(f"{url}: no such object or prefix")
    if not recursive:
        raise IsADirectoryError(f"{url} is a prefix (a directory): pass recursive=True")
    key = urls.split(url)[1]
    transfer.delete_keys(url, [f"{key}/", *(f"{key}/{rel}" for rel in below)])


@_in_one_line
def copy(src: str, dst: str) -> None:
    """Copy one file between any two of a local path and a URL (store to store server-side)."""
    src, dst = _where(src), _where(dst)
    if urls.is_url(src) and urls.is_url(dst):
        _copy_in_store(src, dst)
    elif urls.is_url(dst):
        from dispatcher.storage import transfer

        transfer.put_file(src, urls.canonical(dst), create=False)
    else:
        parent = os.path.dirname(dst)
        if parent:
            os.makedirs(parent, exist_ok=True)
        if urls.is_url(src):
            fs, path = _fs(src)
            fs.get_file(path, dst)
        else:
            shutil.copyfile(src, dst)


def _copy_in_store(src: str, dst: str) -> None:
    (source_fs, source), (target_fs, target) = _fs(src), _fs(dst)
    if source_fs is target_fs:  # one endpoint and credentials: no bytes through here
        source_fs.copy(source, target)
        return
    from dispatcher.storage import scratch

    with scratch.local_copy(src) as local:
        copy(local, dst)


@_in_one_line
def copy_parallel(src: str, dst: str, threads: int = COPY_THREADS, **_: Any) -> None:
    """Copy a folder's (or prefix's) files below `dst` at their relative paths, or one
    file to `dst`, as the platform stages data; `threads` files at a time."""
    src, dst = _where(src), _where(dst)
    if not is_directory(src):
        copy(src, dst)
        return
    if not urls.is_url(src) and not urls.is_url(dst):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    files = list_directory(src, recursive=True)
    with ThreadPoolExecutor(max(1, min(threads, len(files) or 1))) as pool:
        done = pool.map(lambda rel: copy(urls.join(src, rel), urls.join(dst, rel)), files)
        for _ in done:  # the first failure is raised here
            pass


@_in_one_line
def read(path: str, binary: bool = False) -> Any:
    """A file's or object's content: text (UTF-8 for an object), or bytes with `binary`."""
    path = _where(path)
    if urls.is_url(path):
        from dispatcher.storage import transfer

        data = transfer.read_bytes(urls.canonical(path))
        return data if binary else data.decode("utf-8")
    with open(path, "rb" if binary else "r") as fh:
        return fh.read()


@_in_one_line
def write(path: str, content: Any, append: bool = False, binary: bool | None = None) -> None:
    """Write `content` (text, or bytes) to a file, or as a whole object to a URL (with
    `append`, the object's earlier content first)."""
    path = _where(path)
    data = content if isinstance(content, (bytes, bytearray)) else None
    if urls.is_url(path):
        from dispatcher.storage import transfer

        url = urls.canonical(path)
        body = bytes(data) if data is not None else str(content).encode("utf-8")
        if append and exists(url):
            body = transfer.read_bytes(url) + body
        transfer.put_bytes(url, body)
        return
    mode = ("a" if append else "w") + ("b" if data is not None or binary else "")
    with open(path, mode) as fh:
        fh.write(content)


# --- File ----------------------------------------------------------------------------------


class File:
    """`mox.file.File(path, mode)`: a file object for a local path or a URL.

    For a URL, reading goes through a scratch copy of the object, and writing through a
    scratch file uploaded whole on `close` (not when a `with` block raises: the object
    keeps what it held, never a part of the new content)."""

    @_in_one_line
    def __init__(self, path: str, mode: str = "r", **kwargs: Any) -> None:
        self.name = _where(path)
        self.mode = mode
        self._upload: Any = None
        self._scratch = ""
        if not urls.is_url(self.name):
            self._fh: io.IOBase = open(self.name, mode, **kwargs)  # noqa: SIM115 - closed by close()
            return
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
        self._fh = self._open_url(mode, kwargs)

    def _open_url(self, mode: str, kwargs: dict[str, Any]) -> Any:
        from dispatcher.storage import scratch

        url = urls.canonical(self.name)
        writes = any(c in mode for c in "wax+")
        if not writes:
            self._scratch = scratch.download(url)
            try:
                return open(self._scratch, mode, **kwargs)  # noqa: SIM115 - closed by close()
            except BaseException:
                scratch.remove(self._scratch)
                raise
        from dispatcher.outputs.objects import StagedObject

        self._upload = StagedObject(url, create="x" in mode)
        self._scratch = self._upload.__enter__()
        if ("a" in mode or "r" in mode) and exists(url):
            _fs(url)[0].get_file(urls.bucket_path(url), self._scratch)
        try:
            return open(self._scratch, mode.replace("x", "w"), **kwargs)  # noqa: SIM115
        except BaseException as exc:
            self._upload.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def close(self) -> None:
        """Close the file; a URL opened for writing is uploaded now."""
        self._finish(None)

    @_in_one_line
    def _finish(self, exc: BaseException | None) -> None:
        if self._fh.closed and self._upload is None and not self._scratch:
            return
        try:
            self._fh.close()
        finally:
            upload, self._upload = self._upload, None
            path, self._scratch = self._scratch, ""
            if upload is not None:
                upload.__exit__(type(exc) if exc else None, exc, None)
            elif path:
                from dispatcher.storage import scratch

                scratch.remove(path)

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def __enter__(self) -> File:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._finish(exc)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fh)

    def __getattr__(self, name: str) -> Any:
        # read, readline, write, seek, tell...: those of the underlying file.
        fh = self.__dict__.get("_fh")
        if fh is None:
            raise AttributeError(name)
        return getattr(fh, name)
