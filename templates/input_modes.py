"""Input modes: which items a template task has, and the arguments each one receives.

Every mode yields `(key, payload)` items whose key is a POSIX path relative to the input
root. File modes keep the payload None and rebuild `input` from the key in the worker, so
a plan over millions of files holds only strings. Any field may be a `Placeholder`: the
template puts the mode into the task's `mixin`, and these methods see the filled copy.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from dispatcher.errors import UsageError
from templates.walk import Group, glob_depth, glob_regex, listed, walk, walk_suffixes

Item = tuple[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: Any) -> list[str] | None:
    """`value` as a non-empty list of non-empty strings (one string is a list of one)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values:
        return None
    if not all(isinstance(v, str) and v for v in values):
        return None
    return list(values)


class InputMode:
    """What every input mode provides to the template."""

    trusted_keys = True
    """Keys come from the filesystem, so they are safe relative paths by construction."""

    def problems(self, where: str) -> list[str]:
        return []

    def input_help(self) -> str:
        """What the task's `input` names under this mode, for `-h`."""
        return "input root (a folder)"

    def root_problems(self, input_value: str, input_root: str) -> list[str]:
        """Why the configured input cannot be read (checked before any work)."""
        if not os.path.isdir(input_root):
            what = "does not exist" if not os.path.exists(input_root) else "is not a folder"
            return [f"mixin 'input': input folder {input_value} {what}"]
        return []

    def items(self, input_value: str, input_root: str) -> list[Item]:
        raise NotImplementedError

    def listed_items(self, keys: list[str]) -> list[Item] | None:
        """The items found in a store's listing of the input prefix (object keys relative
        to it); None for a mode that reads local files to find its items."""
        return None

    def items_with_groups(
        self, input_value: str, input_root: str
    ) -> tuple[list[Item], list[Group] | None]:
        """The items, and when the mode can tell, their folder groups in the same order."""
        return self.items(input_value, input_root), None

    def packed_items(self, input_value: str, input_root: str) -> list[Item] | None:
        """The files whose rows an item packs into one part (`OutputPacked`): one item per
        file, payload None; None for a mode that does not read rows."""
        return None

    def kwargs(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        """The keyword arguments of `process` / `load_data` for one item (in the worker)."""
        return {"input": os.path.join(input_root, key)}

    def describe(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        """An item as its failure record shows it (in the parent)."""
        return {"input": os.path.join(input_root, key)}

    def argument_names(self) -> tuple[list[str], str | None]:
        """The names `kwargs` passes, and what else it may pass when that is known only per
        item (checked against the task's signatures before any work)."""
        return ["input"], None

    def key_of(self, input_value: str, input_root: str, kwargs: dict[str, Any]) -> str:
        """The key of an item from its keyword arguments (for `is_executed(**item)`)."""
        rel = os.path.relpath(kwargs["input"], input_root)
        return rel.replace(os.sep, "/")

    def base_root(self, input_value: str) -> str:
        """The folder that item keys are relative to."""
        return input_value

    def read_root(self, input_value: str) -> str:
        """What the items are found in, which no output root may lie in or hold: the folder
        walked, or the one JSONL file that lists them (outputs may then go beside it)."""
        return self.base_root(input_value)


@dataclass(kw_only=True)
class _Walked(InputMode):
    hidden: bool = False
    """Include names starting with a dot (skipped by default: `.DS_Store`, `._clip.mp4`)."""
    follow_links: bool = False
    """Descend into symlinked folders (loops are detected); symlinked files always count."""

    def _flag_problems(self, where: str) -> list[str]:
        return [
            f"mixin '{where}.{name}': expected true or false, got {getattr(self, name)!r}"
            for name in ("hidden", "follow_links")
            if not isinstance(getattr(self, name), bool)
        ]


@dataclass
class InputByExtensions(_Walked):
    """Every file under the input root (recursively) whose name ends with one of `exts`.

    Case-insensitive; `mp4` and `.mp4` mean the same; `.tar.gz` works.
    """

    exts: list[str] | str

    def _suffixes(self) -> tuple[str, ...]:
        values = _str_list(self.exts) or []
        return tuple(v.lower() if v.startswith(".") else "." + v.lower() for v in values)

    def problems(self, where: str) -> list[str]:
        out = self._flag_problems(where)
        if _str_list(self.exts) is None:
            out.append(
                f"mixin '{where}.exts': expected a non-empty list of extensions, got {self.exts!r}"
            )
        return out

    def items(self, input_value: str, input_root: str) -> list[Item]:
        return self.items_with_groups(input_value, input_root)[0]

    def listed_items(self, keys: list[str]) -> list[Item]:
        suffixes = self._suffixes()
        found = listed(keys, accept_path=lambda k: k.lower().endswith(suffixes), hidden=self.hidden)
        return list(zip(found, repeat(None)))

    def items_with_groups(
        self, input_value: str, input_root: str
    ) -> tuple[list[Item], list[Group] | None]:
        groups = walk_suffixes(
            input_root,
            self._suffixes(),
            hidden=self.hidden,
            follow_links=self.follow_links,
        )
        items: list[Item] = []
        for prefix, names in groups:
            items += zip(map(operator.add, repeat(prefix), names), repeat(None))
        return items, groups


@dataclass
class InputByGlob(_Walked):
    """Every file whose path relative to the input root matches `pattern` (or any of a list).

    `*`, `?`, `[...]` match inside one folder level; `**` matches any number of levels:
    `**/*.jpg`, `*/frames/*.png`, `2024-*/**/*.json`.
    """

    pattern: str | list[str] = "**/*"
    case_sensitive: bool = True

    def problems(self, where: str) -> list[str]:
        out = self._flag_problems(where)
        patterns = _str_list(self.pattern)
        if patterns is None:
            out.append(
                f"mixin '{where}.pattern': expected a glob or a list of globs, got {self.pattern!r}"
            )
        elif any(p.startswith("/") or ".." in p.split("/") for p in patterns):
            out.append(f"mixin '{where}.pattern': a glob is relative to the input root: {patterns}")
        if not isinstance(self.case_sensitive, bool):
            out.append(f"mixin '{where}.case_sensitive': expected true or false")
        return out

    def _regex(self) -> Any:
        import re

        patterns = _str_list(self.pattern) or []
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.compile("|".join(f"(?:{glob_regex(p)})" for p in patterns), flags)

    def listed_items(self, keys: list[str]) -> list[Item]:
        regex = self._regex()
        found = listed(keys, accept_path=lambda k: regex.match(k) is not None, hidden=self.hidden)
        return list(zip(found, repeat(None)))

    def items(self, input_value: str, input_root: str) -> list[Item]:
        patterns = _str_list(self.pattern) or []
        regex = self._regex()
        keys = walk(
            input_root,
            accept_path=lambda key: regex.match(key) is not None,
            max_depth=glob_depth(patterns),
            hidden=self.hidden,
            follow_links=self.follow_links,
        )
        return list(zip(keys, repeat(None)))


@dataclass
class InputByDepth(_Walked):
    """Every entry exactly `depth` folder levels below the input root: one item per folder.

    `depth=1` makes each sub-folder of the input root an item (a scene of frames, a
    shard of records); `kind` chooses folders (default), files, or both.
    """

    depth: int = 1
    kind: str = "dir"

    def problems(self, where: str) -> list[str]:
        out = self._flag_problems(where)
        if not _is_int(self.depth) or self.depth < 1:
            out.append(f"mixin '{where}.depth': expected an integer >= 1, got {self.depth!r}")
        if self.kind not in ("dir", "file", "any"):
            out.append(f"mixin '{where}.kind': expected dir, file or any, got {self.kind!r}")
        return out

    def listed_items(self, keys: list[str]) -> list[Item]:
        depth = self.depth
        found = listed(keys, min_depth=depth, max_depth=depth, kind=self.kind, hidden=self.hidden)
        return list(zip(found, repeat(None)))

    def items(self, input_value: str, input_root: str) -> list[Item]:
        keys = walk(
            input_root,
            min_depth=self.depth,
            max_depth=self.depth,
            kind=self.kind,
            hidden=self.hidden,
            follow_links=self.follow_links,
        )
        return list(zip(keys, repeat(None)))


_HANDLES: dict[tuple[int, str], Any] = {}
_ROW_LINES: dict[tuple[int, str], dict[str, tuple[int, int]]] = {}
"""(pid, list file) -> key -> (line number, byte offset) of its first row; failures only."""
SHOWN_KEYS = 3
SHOWN_LINES = 5


def _read_row(path: str, offset: int) -> Any:
    """The JSON row starting at byte `offset` of `path`; one open handle per process."""
    handle_key = (os.getpid(), path)
    fh = _HANDLES.get(handle_key)
    if fh is None:
        fh = _HANDLES[handle_key] = open(path, "rb")  # noqa: SIM115 (kept open for the run)
    fh.seek(offset)
    return json.loads(fh.readline())


@dataclass
class InputFromJsonl(InputMode):
    """Items listed in a JSON Lines file: rows that are paths, or arbitrary item objects.

    A row that is a JSON string is a path relative to the input root (an absolute path
    inside the root is made relative). A row that is an object is an item: its field
    `key` names it (its key, and its outputs' place) and all its fields become keyword
    arguments of `process`. `path` is the JSONL file; left empty, the task's `input` is
    the JSONL file and paths are relative to its folder.
    """

    path: str | None = None
    key: str = "path"

    trusted_keys = False

    def problems(self, where: str) -> list[str]:
        out = []
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            out.append(
                f"mixin '{where}.path': expected the path of a JSONL file, got {self.path!r}"
            )
        if not isinstance(self.key, str) or not self.key:
            out.append(f"mixin '{where}.key': expected a field name, got {self.key!r}")
        return out

    def input_help(self) -> str:
        if self.path:
            return "input root (item paths are relative to it; the list is input_mode.path)"
        return "input JSONL file (item paths are relative to its folder)"

    def list_file(self, input_value: str) -> str:
        return os.path.abspath(self.path if self.path else input_value)

    def base_root(self, input_value: str) -> str:
        return input_value if self.path else os.path.dirname(os.path.abspath(input_value))

    def read_root(self, input_value: str) -> str:
        # The list is the items: without `path`, nothing but the file itself is walked.
        return input_value if self.path else os.path.abspath(input_value)

    def root_problems(self, input_value: str, input_root: str) -> list[str]:
        listing = self.list_file(input_value)
        where = "input_mode.path" if self.path else "input"
        if not os.path.isfile(listing):
            what = "does not exist" if not os.path.exists(listing) else "is not a file"
            return [f"mixin '{where}': JSONL list {listing} {what}"]
        if not os.access(listing, os.R_OK):
            return [f"mixin '{where}': JSONL list {listing} is not readable"]
        if self.path:  # keys are relative to the input folder: it must be there
            return super().root_problems(input_value, input_root)
        return []

    def normalize(self, raw: str, input_root: str) -> str:
        """A row's path as a key: relative to the root, without `.` or empty segments.

        `..` and absolute paths outside the root are kept as they are: such an item then
        fails with a clear reason instead of writing anywhere.
        """
        if raw.startswith("/"):
            prefix = input_root.rstrip("/") + "/"
            if not raw.startswith(prefix):
                return raw
            raw = raw[len(prefix) :]
        if "//" in raw or raw.startswith("./") or "/./" in raw or raw.endswith(("/", "/.")):
            raw = "/".join(p for p in raw.split("/") if p not in ("", "."))
        return raw

    def items(self, input_value: str, input_root: str) -> list[Item]:
        listing = self.list_file(input_value)
        key_field = self.key
        normalize = self.normalize
        items: list[Item] = []
        append = items.append
        offset = 0
        with open(listing, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                start = offset
                offset += len(line)
                row = line.strip()
                if not row:
                    continue
                if row[0] == 0x22 and row[-1] == 0x22 and row.count(b'"') == 2 and b"\\" not in row:
                    try:
                        append((normalize(row[1:-1].decode("utf-8"), input_root), None))
                        continue
                    except UnicodeDecodeError:
                        raise UsageError(f"{listing}:{lineno}: not valid UTF-8") from None
                try:
                    value = json.loads(row)
                except ValueError as exc:
                    raise UsageError(
                        f"{listing}:{lineno}: not valid JSON ({exc}); each row must be a "
                        'quoted path ("a/b.mp4") or an object'
                    ) from None
                if isinstance(value, str):
                    append((normalize(value, input_root), None))
                elif isinstance(value, dict):
                    name = value.get(key_field)
                    if not isinstance(name, str):
                        raise UsageError(
                            f"{listing}:{lineno}: the row has no string field '{key_field}' "
                            "to name the item (set input_mode.key)"
                        )
                    append((normalize(name, input_root), start))
                else:
                    raise UsageError(
                        f"{listing}:{lineno}: a row must be a path string or an object, "
                        f"got {type(value).__name__}"
                    )
        if len(set(map(operator.itemgetter(0), items))) != len(items):
            self._refuse_ambiguous_rows(listing, input_root)
        return items

    def _rows(self, listing: str, input_root: str) -> Iterator[tuple[int, int, str, Any]]:
        """(line number, byte offset, key, value) of every row of a list `items` accepted."""
        offset = 0
        with open(listing, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                start = offset
                offset += len(line)
                if not line.strip():
                    continue
                value = json.loads(line)
                name = value.get(self.key) if isinstance(value, dict) else value
                yield lineno, start, self.normalize(name, input_root), value

    def _refuse_ambiguous_rows(self, listing: str, input_root: str) -> None:
        """Two rows with one key, one of them an object: which row is meant is ambiguous.

        Path rows that name the same file mean the same item: the plan runs it once and
        reports the repeat.
        """
        lines: dict[str, list[int]] = {}
        objects: set[str] = set()
        for lineno, _, key, value in self._rows(listing, input_root):
            lines.setdefault(key, []).append(lineno)
            if isinstance(value, dict):
                objects.add(key)
        clashes = [(k, n) for k, n in lines.items() if len(n) > 1 and k in objects]
        if not clashes:
            return
        shown = "; ".join(
            f"{key!r} at "
            + ", ".join(f"{listing}:{n}" for n in numbers[:SHOWN_LINES])
            + (", ..." if len(numbers) > SHOWN_LINES else "")
            for key, numbers in clashes[:SHOWN_KEYS]
        )
        more = f"; and {len(clashes) - SHOWN_KEYS} more" if len(clashes) > SHOWN_KEYS else ""
        raise UsageError(
            f"{listing}: {len(clashes)} key{'s are' if len(clashes) > 1 else ' is'} listed more "
            f"than once (field '{self.key}'), so which row is meant is ambiguous: {shown}{more}"
        )

    def describe(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        described: dict[str, Any] = {"input": os.path.join(input_root, key)}
        listing = self.list_file(input_value)
        cache_key = (os.getpid(), listing)
        where = _ROW_LINES.get(cache_key)
        if where is None:  # built on the first failure only: a clean run never pays for it
            where = _ROW_LINES[cache_key] = {}
            for lineno, start, row_key, _ in self._rows(listing, input_root):
                where.setdefault(row_key, (lineno, start))
        found = where.get(key)
        if found is not None:
            lineno, start = found
            described["row"] = _read_row(listing, start if payload is None else payload)
            described["source"] = f"{listing}:{lineno}"
        return described

    def argument_names(self) -> tuple[list[str], str | None]:
        return ["input"], "the fields of its JSONL row"

    def kwargs(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        if payload is None:
            return {"input": os.path.join(input_root, key)}
        row = _read_row(self.list_file(input_value), payload)
        name = row.get(self.key) if isinstance(row, dict) else None
        if not isinstance(name, str) or self.normalize(name, input_root) != key:
            raise RuntimeError(
                f"the JSONL list changed since the plan: the row at byte {payload} is no "
                f"longer item {key!r}"
            )
        clash = sorted(k for k in row if k == "input" or k == "output" or k.startswith("output_"))
        if clash:
            raise ValueError(
                f"row field(s) {', '.join(clash)} collide with the arguments the template "
                "passes to process (input, output, output_<name>)"
            )
        kwargs = {"input": os.path.join(input_root, key)}
        kwargs.update(row)
        return kwargs

    def key_of(self, input_value: str, input_root: str, kwargs: dict[str, Any]) -> str:
        name = kwargs.get(self.key)
        if isinstance(name, str):
            return self.normalize(name, input_root)
        return super().key_of(input_value, input_root, kwargs)


@dataclass
class InputJsonlFiles(InputMode):
    """A JSONL file, or every `.jsonl` file under a folder: one item per file.

    Keys are relative to the folder (a single file's key is its name, relative to its own
    folder), so outputs at the same relative path mirror the input tree.
    """

    def input_help(self) -> str:
        return "input JSONL file, or a folder of them"

    def base_root(self, input_value: str) -> str:
        if os.path.isfile(input_value):
            return os.path.dirname(os.path.abspath(input_value))
        return input_value

    def read_root(self, input_value: str) -> str:
        # One file is read, not the folder around it: outputs may go beside it.
        return input_value if os.path.isfile(input_value) else self.base_root(input_value)

    def root_problems(self, input_value: str, input_root: str) -> list[str]:
        if os.path.isfile(input_value):
            if not os.access(input_value, os.R_OK):
                return [f"mixin 'input': JSONL file {input_value} is not readable"]
            return []
        if not os.path.exists(input_value):
            return [f"mixin 'input': {input_value} does not exist (a JSONL file or a folder)"]
        return super().root_problems(input_value, input_root)

    def files(self, input_value: str, input_root: str) -> list[str]:
        """The JSONL files' keys, in sorted order."""
        if os.path.isfile(input_value):
            return [os.path.basename(input_value)]
        groups = walk_suffixes(input_root, (".jsonl",))
        return [prefix + name for prefix, names in groups for name in names]

    def items(self, input_value: str, input_root: str) -> list[Item]:
        return list(zip(self.files(input_value, input_root), repeat(None)))


@dataclass
class InputJsonlRows(InputJsonlFiles):
    """Every row of a JSONL file (or of a folder of them): one item per row.

    A row is keyed by its field `key` (default `id`) when it has one, else by
    `<file>:<line>`; the payload is (file, byte offset, line number), so the plan holds no
    row. Rows are read once at planning: a row that is not a JSON object is refused there
    (file:line), before any work, and so are two rows with one key.
    """

    key: str = "id"

    trusted_keys = False

    def problems(self, where: str) -> list[str]:
        if not isinstance(self.key, str) or not self.key:
            return [f"mixin '{where}.key': expected a field name, got {self.key!r}"]
        return []

    def items(self, input_value: str, input_root: str) -> list[Item]:
        items: list[Item] = []
        seen: dict[str, str] = {}
        for rel in self.files(input_value, input_root):
            path = os.path.join(input_root, rel)
            offset = 0
            with open(path, "rb") as fh:
                for lineno, line in enumerate(fh, 1):
                    start, offset = offset, offset + len(line)
                    if not line.strip():
                        continue
                    key = self._row_key(path, rel, lineno, line)
                    where = f"{path}:{lineno}"
                    if key in seen:
                        raise UsageError(
                            f"{where}: key {key!r} (field '{self.key}') is also the key of "
                            f"{seen[key]}: each row must name its own item"
                        )
                    seen[key] = where
                    items.append((key, (rel, start, lineno)))
        return items

    def _row_key(self, path: str, rel: str, lineno: int, line: bytes) -> str:
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise UsageError(
                f"{path}:{lineno}: a row must be a JSON object, got {type(row).__name__}"
            )
        name = row.get(self.key)
        if isinstance(name, bool) or not isinstance(name, (str, int)) or name == "":
            return f"{rel}:{lineno}"
        return str(name)

    def packed_items(self, input_value: str, input_root: str) -> list[Item]:
        return InputJsonlFiles.items(self, input_value, input_root)

    def kwargs(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        if payload is None:  # a file whose rows are packed: the template reads them
            return {"input": os.path.join(input_root, key)}
        rel, offset, lineno = payload
        path = os.path.join(input_root, rel)
        return {"input": path, "row": _read_row(path, offset), "line": lineno}

    def describe(self, input_value: str, input_root: str, key: str, payload: Any) -> dict[str, Any]:
        if payload is None:
            return {"input": os.path.join(input_root, key)}
        rel, offset, lineno = payload
        path = os.path.join(input_root, rel)
        return {"input": path, "source": f"{path}:{lineno}", "row": _read_row(path, offset)}

    def argument_names(self) -> tuple[list[str], str | None]:
        return ["input", "row", "line"], None

    def key_of(self, input_value: str, input_root: str, kwargs: dict[str, Any]) -> str:
        rel = os.path.relpath(kwargs["input"], input_root).replace(os.sep, "/")
        row = kwargs["row"]
        name = row.get(self.key) if isinstance(row, dict) else None
        if isinstance(name, bool) or not isinstance(name, (str, int)) or name == "":
            return f"{rel}:{kwargs['line']}"
        return str(name)
