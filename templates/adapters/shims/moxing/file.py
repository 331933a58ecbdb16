"""`mox.file` functions over local paths."""

from __future__ import annotations

import glob as _glob
import os
import shutil
from typing import Any


def _local(path: str) -> str:
    path = os.fspath(path)
    if "://" in path:
        raise ValueError(f"moxing stand-in: only local paths are supported, got {path!r}")
    return path


def exists(path: str) -> bool:
    return os.path.exists(_local(path))


def is_directory(path: str) -> bool:
    return os.path.isdir(_local(path))


def list_directory(path: str, recursive: bool = False) -> list[str]:
    """Names in `path` (sorted); with `recursive`, paths of files relative to it."""
    path = _local(path)
    if not recursive:
        return sorted(os.listdir(path))
    found = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        rel = os.path.relpath(folder, path)
        found += [name if rel == "." else os.path.join(rel, name) for name in sorted(files)]
    return sorted(found)


def glob(pattern: str) -> list[str]:
    return sorted(_glob.glob(_local(pattern), recursive=True))


def make_dirs(path: str) -> None:
    os.makedirs(_local(path), exist_ok=True)


mk_dir = make_dirs


def remove(path: str, recursive: bool = False) -> None:
    path = _local(path)
    if os.path.isdir(path) and not os.path.islink(path):
        if not recursive:
            raise IsADirectoryError(f"{path} is a directory: pass recursive=True")
        shutil.rmtree(path)
    else:
        os.remove(path)


def copy(src: str, dst: str) -> None:
    src, dst = _local(src), _local(dst)
    parent = os.path.dirname(dst)
    if parent:
        os.makedirs(parent, exist_ok=True)
    shutil.copyfile(src, dst)


def copy_parallel(src: str, dst: str, **_: Any) -> None:
    """Copy a folder's contents (or one file) to `dst`, as the platform stages data."""
    src, dst = _local(src), _local(dst)
    if not os.path.isdir(src):
        copy(src, dst)
        return
    shutil.copytree(src, dst, dirs_exist_ok=True)


def read(path: str, binary: bool = False) -> Any:
    with open(_local(path), "rb" if binary else "r") as fh:
        return fh.read()


def write(path: str, content: Any, append: bool = False) -> None:
    binary = isinstance(content, (bytes, bytearray))
    mode = ("a" if append else "w") + ("b" if binary else "")
    with open(_local(path), mode) as fh:
        fh.write(content)
