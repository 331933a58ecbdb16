"""aiges `Wrapper` classes, run over the rows of JSONL files as the aiges loader runs them.

As aiges 0.16.0 does (`sdk.py`, `dto.py`): `Wrapper()` with no arguments;
`wrapperInit(config)` once per worker with a str -> str dict (the class's own `config`,
then `--mixin config.KEY=VALUE`); a non-zero return fails the setup, naming the code. Per
item (one row) `wrapperOnceExec(params, reqData)`: `params` are the row's fields that are
not body fields, as strings (declared parameters missing from the row take their
defaults); `reqData.list` holds one node per body field the wrapper's `requestCls`
declares, filled from the row (a path field - image, audio, video - names a file, read as
bytes; relative paths are relative to the JSONL file). The returned `Response` either
carries `.list` of `ResponseData`, written as one file per key under the item's output
folder plus `manifest.jsonl` (committed together), or an error code: the item fails with
`wrapperError(code)`'s message and the code. `wrapperFini()` once at the end.

When the real SDK is not installed, wrapper files import a stand-in
(`templates/adapters/aiges_sdk`); when it is, they get it, adapted in each worker to take
the document's `l.data = ...` (`aiges_real`). Methods written as `@classmethod`s, as methods taking
`cls`, or without `self` at all (`def wrapperFini()`) are all called.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from typing import Any

from dispatcher.config.placeholders import Placeholder
from dispatcher.outputs import unsafe_reason
from dispatcher.task import Task
from templates.adapters import aiges_real
from templates.adapters.task import TaskStage
from templates.hooks import template_class
from templates.input_modes import InputJsonlRows
from templates.output_modes import OutputSubfolder

MANIFEST = "manifest.jsonl"
ONCE = 3
"""`DataOnce`: the status of a node of a request answered at once (no session)."""


class WrapperError(RuntimeError):
    """`wrapperOnceExec` answered with an error code (kept as `code`)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"wrapperOnceExec returned error code {code}: {message or 'no message'}")
        self.code = code


def call(wrapper: Any, name: str, *args: Any) -> Any:
    """`wrapper.name(*args)`, also for a method defined without `self` (`def wrapperFini()`)."""
    raw = inspect.getattr_static(type(wrapper), name, None)
    if inspect.isfunction(raw):
        params = inspect.signature(raw).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) == len(args) and not any(p.kind == p.VAR_POSITIONAL for p in params):
            return raw(*args)
    return getattr(wrapper, name)(*args)


def _kinds(field: Any) -> set[str]:
    return {c.__name__ for c in type(field).__mro__}


def request_fields(wrapper_cls: type) -> tuple[list[Any], list[Any]]:
    """(body fields, parameter fields) the wrapper's `requestCls` declares, as the SDK's
    metaclass reads them: class attributes of the request object's class."""
    request = getattr(wrapper_cls, "requestCls", None)
    if request is None:
        return [], []
    source = request if isinstance(request, type) else type(request)
    values = list(vars(source).values())
    if not isinstance(request, type):
        values += list(vars(request).values())
    bodies = [v for v in values if "PayloadField" in _kinds(v)]
    params = [v for v in values if "ParamField" in _kinds(v)]
    return bodies, params


def as_text(value: Any) -> str:
    """A row value as aiges passes parameters: a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _default(field: Any) -> Any:
    return (
        getattr(field, "default", None)
        if "BooleanParamField" in _kinds(field)
        else (getattr(field, "value", None))
    )


def _body_bytes(field: Any, value: Any, folder: str) -> bytes:
    if hasattr(field, "path"):  # image, audio, video: a file
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"body field '{field.key}' names a file: expected a path, got {value!r}"
            )
        with open(os.path.join(folder, value), "rb") as fh:
            return fh.read()
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode()


def _data_bytes(key: str, data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if data is None:  # a forgotten value: an empty file would be counted done
        raise TypeError(f"ResponseData '{key}' has data None: set bytes or text with setData")
    raise TypeError(f"ResponseData '{key}': data must be bytes or str, got {type(data).__name__}")


class WrapperTask(Task):
    """The planned side of a `Wrapper` class: rows in, a folder per row out."""

    wrapper_class: type
    mixin = {
        "config": Placeholder(
            dict[str, str], default={}, help="wrapperInit's config (config.KEY=VALUE)"
        ),
    }

    def setup(self) -> None:
        cls = self.wrapper_class
        wrapper = cls()
        config = {str(k): as_text(v) for k, v in (getattr(cls, "config", None) or {}).items()}
        config.update(self.mixin.config or {})
        code = call(wrapper, "wrapperInit", config)
        if code not in (0, None):
            raise RuntimeError(f"wrapperInit returned {code}: {self._message(wrapper, code)}")
        self._wrapper = wrapper
        self._fields = request_fields(cls)

    def teardown(self) -> None:
        wrapper = self.__dict__.pop("_wrapper", None)
        if wrapper is None:
            return
        with contextlib.suppress(NotImplementedError):  # the SDK base's, when not written
            call(wrapper, "wrapperFini")

    @staticmethod
    def _message(wrapper: Any, code: Any) -> str:
        try:
            return str(call(wrapper, "wrapperError", code) or "")
        except Exception as exc:
            return f"(wrapperError failed: {type(exc).__name__}: {exc})"

    def request(self, input: str, row: dict[str, Any]) -> tuple[dict[str, str], Any]:
        """(params, reqData) for one row."""
        bodies, declared = self._fields
        body_keys = {field.key for field in bodies}
        key_field = self.mixin.input_mode.key
        params = {
            str(k): as_text(v) for k, v in row.items() if k not in body_keys and k != key_field
        }
        for field in declared:
            if field.key not in params and _default(field) is not None:
                params[field.key] = as_text(_default(field))
        req = _request_data()
        folder = os.path.dirname(input)
        for field in bodies:
            if field.key not in row:
                request = self.wrapper_class.requestCls
                named = request if isinstance(request, type) else type(request)
                raise KeyError(
                    f"the row has no field '{field.key}' (a body field of {named.__name__})"
                )
            node = _node()
            node.key = field.key
            node.data = _body_bytes(field, row[field.key], folder)
            node.len = len(node.data)
            node.type = field.data_type
            node.status = ONCE
            req.list.append(node)
        return params, req

    def process(
        self, input: str, row: dict[str, Any], line: int, output: str, output_manifest: str
    ) -> None:
        wrapper = self._wrapper
        params, req = self.request(input, row)
        response = call(wrapper, "wrapperOnceExec", params, req)
        code = response if isinstance(response, int) else getattr(response, "error_code", 0)
        if code:
            raise WrapperError(code, self._message(wrapper, code))
        if response is None or isinstance(response, int):
            raise TypeError("wrapperOnceExec returned no Response")
        manifest, seen = [], set()
        for node in response.list:
            key = str(node.key)
            reason = unsafe_reason(key)
            if reason or "/" in key or key == MANIFEST or key in seen:
                why = reason or ("a duplicate key" if key in seen else "not a plain file name")
                raise ValueError(f"ResponseData key {key!r} cannot name an output file: {why}")
            seen.add(key)
            data = _data_bytes(key, node.data)
            with open(os.path.join(output, key), "wb") as fh:
                fh.write(data)
            manifest.append(
                {
                    "key": key,
                    "file": key,
                    "len": len(data),
                    "type": node.type,
                    "status": node.status,
                }
            )
        with open(output_manifest, "w", encoding="utf-8") as fh:
            for entry in manifest:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _request_data() -> Any:
    """A `DataListCls` (the SDK's own class, real or stand-in, when it is importable)."""
    cls = _dto("DataListCls")
    req = cls() if cls is not None else type("DataListCls", (), {})()
    req.list = []
    return req


def _node() -> Any:
    cls = _dto("DataListNode")
    return cls() if cls is not None else type("DataListNode", (), {})()


def _dto(name: str) -> Any:
    module = sys.modules.get("aiges.dto")
    return getattr(module, name, None) if module is not None else None


class WrapperStage(TaskStage):
    """Runs an aiges `Wrapper` class over JSONL rows, a row per item."""

    style = "aiges Wrapper"

    @classmethod
    def accepts(cls, obj: type) -> bool:
        return (
            isinstance(obj, type)
            and obj.__name__ == "Wrapper"
            and not issubclass(obj, Task)
            and callable(getattr(obj, "wrapperInit", None))
            and callable(getattr(obj, "wrapperOnceExec", None))
        )

    @classmethod
    def task_class(cls, obj: type) -> type[Task]:
        return _task_class(obj)

    def setup(self, device: Any = None) -> None:
        # The real SDK, where installed, takes the document's `l.data = ...` here too.
        aiges_real.adapt(self.run_dir)
        super().setup(device)


@functools.cache
def _task_class(wrapper: type) -> type[Task]:
    built: Any = template_class(
        WrapperTask, wrapper, InputJsonlRows(), OutputSubfolder(files={"manifest": MANIFEST})
    )
    built.wrapper_class = wrapper
    built.__dispatch_adapter__ = WrapperStage
    return built
