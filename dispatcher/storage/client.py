"""The one client of every object store: an fsspec S3 filesystem per set of options,
credentials and endpoint from the standard places, and errors said in one line.

`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_ENDPOINT_URL` (and profiles, and
`AWS_PROFILE`) work with no flag: botocore reads them. Per-root options (the `storage:`
section of `--cfg`, `configure`) override them for the roots they name; they travel to
worker processes and array tasks in the environment (`DISPATCH_STORAGE_OPTIONS`), so a
worker talks to the store exactly as the parent did.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dispatcher.storage import urls

OPTIONS_VARIABLE = "DISPATCH_STORAGE_OPTIONS"
OPTION_NAMES = ("endpoint_url", "profile", "anon", "region", "key", "secret")
"""What a root may set: where the store is, which credentials, or none (anonymous)."""

CONNECT_TIMEOUT_SECONDS = 5
"""An endpoint that is down fails in seconds, before any work, instead of hanging."""
ATTEMPTS = 3

_filesystems: dict[str, Any] = {}
if hasattr(os, "register_at_fork"):
    # A client's connections and event loop belong to the process that made it: a forked
    # worker (the mp engine) makes its own.
    os.register_at_fork(after_in_child=_filesystems.clear)


class StorageError(OSError):
    """The store refused or could not be reached: what the user must fix, in one line."""


def option_problems(options: Any, where: str) -> list[str]:
    """Why a `storage:` section cannot be used, one line each (checked before any work)."""
    if not isinstance(options, dict):
        return [f"{where}: expected a mapping of root URL to options, got {options!r}"]
    problems = []
    for root, values in options.items():
        if not urls.is_url(root):
            problems.append(f"{where}: {root!r} is not an s3:// or obs:// URL")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}.{root}: expected a mapping of options, got {values!r}")
            continue
        for key in values:
            if key not in OPTION_NAMES:
                problems.append(
                    f"{where}.{root}: unknown option {key!r} (options: {', '.join(OPTION_NAMES)})"
                )
    return problems


def configure(options: dict[str, dict[str, Any]] | None) -> None:
    """Per-root options for this process and every worker it starts."""
    _filesystems.clear()
    if options:
        os.environ[OPTIONS_VARIABLE] = json.dumps(
            {urls.canonical(root): dict(values) for root, values in options.items()}
        )
    else:
        os.environ.pop(OPTIONS_VARIABLE, None)


def _options_for(url: str) -> dict[str, Any]:
    """The options of the longest configured root that holds `url`."""
    text = os.environ.get(OPTIONS_VARIABLE)
    if not text:
        return {}
    best, found = -1, {}
    for root, values in json.loads(text).items():
        if urls.is_inside(root, url) and len(root) > best:
            best, found = len(root), values
    return found


def filesystem(url: str) -> Any:
    """The S3 filesystem that serves `url` (one per set of options and process)."""
    options = _options_for(url)
    cache_key = json.dumps(options, sort_keys=True)
    fs = _filesystems.get(cache_key)
    if fs is None:
        fs = _filesystems[cache_key] = _new_filesystem(options)
    return fs


def _new_filesystem(options: dict[str, Any]) -> Any:
    try:
        import s3fs
    except ImportError:
        raise StorageError(
            's3:// and obs:// roots need the s3 extra: pip install -e ".[s3]"'
        ) from None
    client_kwargs: dict[str, Any] = {}
    if options.get("region"):
        client_kwargs["region_name"] = options["region"]
    kwargs: dict[str, Any] = {
        "anon": bool(options.get("anon", False)),
        "client_kwargs": client_kwargs,
        "config_kwargs": {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": 60,
            "retries": {"max_attempts": ATTEMPTS, "mode": "standard"},
        },
        "skip_instance_cache": True,
        "use_listings_cache": False,  # a done check must see what is there now
    }
    for name in ("endpoint_url", "profile", "key", "secret"):
        if options.get(name):
            kwargs[name] = options[name]
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = ATTEMPTS
    return fs


def call(url: str, method: str, **kwargs: Any) -> Any:
    """One S3 API call (`list_objects_v2`, `copy_object`...) on the store serving `url`."""
    return filesystem(url).call_s3(method, **kwargs)


def error_line(exc: BaseException, url: str) -> str:
    """What went wrong talking to the store about `url`, in one line the user can act on."""
    bucket = urls.split(url)[0]
    text = f"{type(exc).__name__}: {exc}"
    names = {type(e).__name__ for e in _chain(exc)}
    if "NoCredentialsError" in names:
        return (
            f"{url}: no credentials for the object store (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or a profile)"
        )
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"} or (
        "Could not connect" in text or "Connect timeout" in text
    ):
        endpoint = _options_for(url).get("endpoint_url") or os.environ.get(
            "AWS_ENDPOINT_URL", "the default endpoint"
        )
        return f"{url}: cannot reach the object store at {endpoint}"
    if isinstance(exc, FileNotFoundError) and "bucket" in text.lower():
        return f"{url}: no such bucket {bucket!r}"
    if isinstance(exc, PermissionError):
        return f"{url}: access denied ({exc})"
    return f"{url}: {text}"


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def root_problem(url: str) -> str | None:
    """Why `url` cannot be used as a root (no bucket, no credentials, no endpoint), in one
    line, or None: one LIST of at most one key, asked before any work."""
    bucket, key = urls.split(url)
    if not bucket:
        return f"{url}: no bucket named"
    try:
        call(url, "list_objects_v2", Bucket=bucket, Prefix=key, MaxKeys=1)
    except StorageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure here is the user's to fix
        return error_line(exc, url)
    return None
