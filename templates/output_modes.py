"""Output modes (where an item's results go) and finish checks (when an item is done).

The task writes to staging paths the template hands it; the framework commits them only
after `process` returned and every declared output was written. Whether an item is done
is answered from directory listings of the output tree, in the parent, before dispatch.
Any field may be a `Placeholder`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dispatcher.outputs import OutputOutsideRoot, Staged, confine, staged, unsafe_reason


class OutputPath(str):
    """A path (a plain `str`) that also answers `.path`, for tasks written either way."""

    __slots__ = ()

    @property
    def path(self) -> str:
        return str(self)


def _check_key(key: str) -> None:
    """An item's key must itself be a plain relative path (not empty, no `..`)."""
    reason = unsafe_reason(key)
    if reason:
        raise OutputOutsideRoot(reason.replace("output path", "item path", 1))


class OutputMode:
    """What every output mode provides to the template."""

    def problems(self, where: str) -> list[str]:
        return []

    def names(self) -> list[str]:
        """Names of the individually declared output files (`output_<name>` arguments)."""
        return []

    def argument_names(self) -> list[str]:
        """The keyword arguments `stage` passes: `output` and `output_<name>` for each name."""
        return ["output", *(f"output_{name}" for name in self.names())]

    def done_paths(self, finish: Finish, key: str) -> list[str]:
        """Paths, relative to the output root, that must all exist for `key` to be done."""
        raise NotImplementedError

    def final(self, root: str, key: str) -> str:
        """The item's one committed path (a file or a folder), confined to `root`."""
        _check_key(key)
        return confine(root, self.relative_final(key))

    def relative_final(self, key: str) -> str:
        """The item's committed path relative to the output root (no checks)."""
        raise NotImplementedError

    final_is_done_path: ClassVar[bool] = False
    """The one done path of every item is its committed path, whatever the finish check:
    an item the plan found not done had nothing at its final path."""

    def stage_final(
        self, final: str, fresh: bool = False
    ) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Staging paths for `process` of the item whose committed path, already confined, is
        `final`; committed when the block succeeds (entered by the template item source).
        `fresh`: nothing was at `final` when the plan looked and no other run writes it
        (`dispatcher.outputs.Staged`)."""
        raise NotImplementedError


def normalise_extension(ext: Any) -> Any:
    """`json` means `.json` (and `tar.gz` `.tar.gz`); a suffix starting with `.`, `_` or `-`
    is appended as written. Anything else is left for `problems` to refuse."""
    return "." + ext if isinstance(ext, str) and ext[:1].isalnum() else ext


class _Extension:
    """A field normalised on every assignment (the constructor, and the placeholder fill,
    which sets fields on a copy), so done checks and writes always use the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return ".json" if obj is None else obj.__dict__[self.slot]

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = normalise_extension(value)


@dataclass
class OutputWithExtension(OutputMode):
    """One file per item: the input's relative path plus `ext` (`a/b.mp4` -> `OUT/a/b.mp4.json`).

    `ext="json"` is the same as `ext=".json"`.
    """

    ext: str = _Extension()  # type: ignore[assignment]

    def problems(self, where: str) -> list[str]:
        ext = self.ext
        if not isinstance(ext, str) or not ext:
            return [f"mixin '{where}.ext': expected a file extension such as .json, got {ext!r}"]
        if "/" in ext or os.sep in ext or "\x00" in ext:
            return [f"mixin '{where}.ext': an extension cannot contain a path separator: {ext!r}"]
        return []

    final_is_done_path: ClassVar[bool] = True

    def done_paths(self, finish: Finish, key: str) -> list[str]:
        return [key + self.ext]

    def relative_final(self, key: str) -> str:
        return key + self.ext

    def stage_final(self, final: str, fresh: bool = False) -> _StagedFile:
        return _StagedFile(final, fresh=fresh)


class _StagedFile(Staged):
    """One staged file handed to `process` as `output` (a class: entered once per item)."""

    __slots__ = ()

    def __enter__(self) -> dict[str, Any]:  # type: ignore[override]
        return {"output": OutputPath(super().__enter__())}


@dataclass
class OutputSameFormat(OutputMode):
    """One file per item in the input's own format: `a/b.jsonl` -> `OUT/a/b.jsonl` for a
    name ending with one of `keep`, any other `a/c.png` -> `OUT/a/c.png` + `other_ext`.

    For operators that return a table per input file (ModelArts mode 1).
    """

    keep: list[str] = field(default_factory=lambda: [".jsonl", ".csv", ".parquet"])
    other_ext: str = ".jsonl"

    def problems(self, where: str) -> list[str]:
        out = []
        keep = self.keep
        if not isinstance(keep, list) or not all(isinstance(e, str) and e for e in keep):
            out.append(f"mixin '{where}.keep': expected a list of extensions, got {keep!r}")
        ext = self.other_ext
        if not isinstance(ext, str) or not ext.startswith(".") or "/" in ext:
            out.append(f"mixin '{where}.other_ext': expected an extension such as .jsonl")
        return out

    def relative_final(self, key: str) -> str:
        lowered = key.lower()
        if any(lowered.endswith(ext.lower()) for ext in self.keep):
            return key
        return key + self.other_ext

    final_is_done_path: ClassVar[bool] = True

    def done_paths(self, finish: Finish, key: str) -> list[str]:
        return [self.relative_final(key)]

    def stage_final(self, final: str, fresh: bool = False) -> _StagedFile:
        return _StagedFile(final, fresh=fresh)


@dataclass
class OutputSubfolder(OutputMode):
    """One folder per item (`OUT/<relative path>/`) holding named files.

    `files` maps a name to a file inside the folder; the task gets `output` (the folder)
    and `output_<name>` for each. The folder is written under a staging name and moves
    into place as a whole, after every named file was written.
    """

    files: dict[str, str] = field(default_factory=dict)

    def problems(self, where: str) -> list[str]:
        files = self.files
        if not isinstance(files, dict):
            return [f"mixin '{where}.files': expected a mapping of name to file, got {files!r}"]
        out = []
        for name, rel in files.items():
            if not isinstance(name, str) or not name.isidentifier():
                out.append(
                    f"mixin '{where}.files': output name {name!r} must be a Python identifier "
                    "(it becomes the argument output_<name>)"
                )
            reason = unsafe_reason(rel) if isinstance(rel, str) else f"{rel!r} is not a path"
            if reason:
                out.append(f"mixin '{where}.files.{name}': {reason.replace('output path', 'file')}")
        return out

    def names(self) -> list[str]:
        return list(self.files)

    def done_paths(self, finish: Finish, key: str) -> list[str]:
        if isinstance(finish, FinishWhenExists):
            return [key if finish.name is None else f"{key}/{self.files[finish.name]}"]
        if not self.files:
            return [key]
        return [f"{key}/{rel}" for rel in self.files.values()]

    def relative_final(self, key: str) -> str:
        return key

    @contextlib.contextmanager
    def stage_final(self, final: str, fresh: bool = False) -> Iterator[dict[str, Any]]:
        with staged(final, folder=True, required=list(self.files.values())) as staging:
            outputs: dict[str, Any] = {"output": OutputPath(staging)}
            for name, rel in self.files.items():
                path = os.path.join(staging, rel)
                if os.path.dirname(rel):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                outputs[f"output_{name}"] = OutputPath(path)
            yield outputs


PACKED_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}
PACKED_COMPRESSIONS = {None: "", "gzip": ".gz", "zstd": ".zst"}


@dataclass
class OutputPacked(OutputMode):
    """The rows of one item packed into one part file, for row tasks (`InputJsonlRows`):
    `process(input, row, line)` returns each output row (a dict; None drops the row),
    and the template writes them, in order, to `OUT/<item key><ext>`, committed whole.

    Without `--rows-per-item` an item is a whole input file (`a.jsonl` ->
    `OUT/a.jsonl.jsonl`); with it, a range of about N rows (`a.jsonl@00003-of-00040` ->
    `OUT/a.jsonl@00003-of-00040.jsonl`): 100M rows make 100M / N part files, not 100M.
    `format` is `jsonl` (optionally `compression: gzip` or `zstd`) or `parquet`.
    """

    format: str = "jsonl"
    compression: str | None = None

    packs_rows: ClassVar[bool] = True
    final_is_done_path: ClassVar[bool] = True

    def problems(self, where: str) -> list[str]:
        out = []
        if self.format not in PACKED_FORMATS:
            out.append(
                f"mixin '{where}.format': expected one of {', '.join(PACKED_FORMATS)}, "
                f"got {self.format!r}"
            )
        if self.compression not in PACKED_COMPRESSIONS:
            out.append(
                f"mixin '{where}.compression': expected gzip, zstd or null, got {self.compression!r}"
            )
        elif self.compression is not None and self.format != "jsonl":
            out.append(f"mixin '{where}.compression': only a jsonl part is compressed")
        return out

    @property
    def ext(self) -> str:
        return PACKED_FORMATS[self.format] + PACKED_COMPRESSIONS[self.compression]

    def argument_names(self) -> list[str]:
        return []  # `process` returns the row: the template writes the part

    def done_paths(self, finish: Finish, key: str) -> list[str]:
        return [key + self.ext]

    def relative_final(self, key: str) -> str:
        return key + self.ext

    def stage_final(self, final: str, fresh: bool = False) -> _StagedPart:
        return _StagedPart(final, self.format, self.compression, fresh=fresh)


class _StagedPart(Staged):
    """One staged part file and its writer (`rows`), finished before it is committed."""

    __slots__ = ("format", "compression", "writer")

    def __init__(self, final: str, fmt: str, compression: str | None, fresh: bool = False) -> None:
        super().__init__(final, fresh=fresh)
        self.format, self.compression = fmt, compression
        self.writer: Any = None

    def __enter__(self) -> dict[str, Any]:  # type: ignore[override]
        from templates.packed import PartWriter

        staging = super().__enter__()
        try:
            self.writer = PartWriter(staging, self.format, self.compression)
        except BaseException:
            super().__exit__(*sys.exc_info())
            raise
        return {"output": OutputPath(staging), "rows": self.writer}

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            self.writer.close(keep=exc_type is None)
        except BaseException:
            if exc_type is None:
                super().__exit__(*sys.exc_info())
                raise
        super().__exit__(exc_type, *exc)


class Finish:
    """When an item counts as done."""

    def problems(self, where: str, output: OutputMode) -> list[str]:
        return []


@dataclass
class FinishWhenAllExist(Finish):
    """Done when every declared output exists (the default)."""


@dataclass
class FinishWhenExists(Finish):
    """Done when the named output exists (a marker such as a manifest).

    Without a name, the item's whole output (its file, or its folder) must exist.
    """

    name: str | None = None

    def problems(self, where: str, output: OutputMode) -> list[str]:
        if self.name is None:
            return []
        known = output.names()
        if self.name not in known:
            listing = ", ".join(known) if known else "none"
            return [
                f"mixin '{where}.name': {self.name!r} is not a declared output "
                f"(declared: {listing})"
            ]
        return []
