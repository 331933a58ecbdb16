"""An S3 endpoint for the object-storage tests: moto's standalone server in a subprocess (real
HTTP on 127.0.0.1, so clients in any process reach it and its access log counts their requests),
or an outside S3-compatible store named by the environment.

Only the standard library is imported here (boto3 on first use), so conftest can import this
module where s3fs and moto are not installed."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 30.0
"""How long `S3Server.start` waits for the server to answer."""

UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""Variables a client's environment must not inherit: a dict of values cannot neutralise them
(botocore rejects every AWS_PROFILE once the config files are emptied; a session token would be
sent with the test keys). `S3Endpoint.full_env` and `apply_env` drop them."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ACCESS_LINE = re.compile(
    r'^\S+ - - \[[^\]]*\] "(?P<method>[A-Z]+) (?P<target>.*) HTTP/\d(?:\.\d)?" (?:\d{3}|-) \S+$'
)


def count(requests: Iterable[tuple[str, str]], method: str, path_prefix: str = "") -> int:
    """How many of `requests` (from `S3Server.requests`) used `method`, only counting targets
    that start with `path_prefix` when given (e.g. "/bucket/key")."""
    return sum(1 for m, target in requests if m == method and target.startswith(path_prefix))


def _folder(prefix: str) -> str:
    """`prefix` as a folder ("a/b/"), or "" for the whole bucket."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


class S3Endpoint:
    """An S3-compatible store the tests talk to; this base class is an outside one (from
    DISPATCH_TEST_S3_ENDPOINT) that cannot count requests. `S3Server` runs moto locally."""

    counts_requests: bool = False
    """Whether `requests` returns what the server saw (False: it returns None)."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        session_token: str | None = None,
        local: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.session_token = session_token
        self.local = local
        self._client: Any = None

    @classmethod
    def from_environment(cls, endpoint: str) -> S3Endpoint:
        """An outside store at `endpoint`, with the credentials and region of AWS_* in this
        process's environment (no profile, no config file: the same keys reach subprocesses)."""
        try:
            access_key = os.environ["AWS_ACCESS_KEY_ID"]
            secret_key = os.environ["AWS_SECRET_ACCESS_KEY"]
        except KeyError as missing:
            raise RuntimeError(
                f"DISPATCH_TEST_S3_ENDPOINT={endpoint} is set but {missing.args[0]} is not: "
                "the outside store's keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        return cls(
            endpoint.rstrip("/"),
            access_key,
            secret_key,
            region=region or "us-east-1",
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        )

    def env(self) -> dict[str, str]:
        """Environment variables that point a boto3/s3fs client (in this process or a
        subprocess) at this store and nowhere else: test keys, the endpoint for every service,
        config files emptied, no instance metadata; for the local server, no proxy either.
        Apply with `apply_env` or `full_env`, which also drop `UNSET_ENV`."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "false",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        if self.local:
            # Empty proxy variables count as unset for urllib, requests and aiohttp.
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                env[name] = env[name.lower()] = ""
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def unset_env(self) -> tuple[str, ...]:
        """The variables of `UNSET_ENV` that `env()` does not set itself."""
        return tuple(name for name in UNSET_ENV if name not in self.env())

    def full_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a subprocess: `base` (this process's by default) without
        `UNSET_ENV`, plus `env()`."""
        env = dict(os.environ if base is None else base)
        for name in self.unset_env():
            env.pop(name, None)
        env.update(self.env())
        return env

    def apply_env(self, monkeypatch: Any) -> None:
        """`env()` set in this process through pytest's `monkeypatch` (undone after the test),
        `UNSET_ENV` removed."""
        for name in self.unset_env():
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    def client(self) -> Any:
        """A boto3 S3 client on the endpoint (shared; boto3 clients are thread-safe): a 2 s
        connect timeout and at most 2 retries, so a dead server fails a test quickly."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                aws_session_token=self.session_token,
                region_name=self.region,
                config=Config(
                    connect_timeout=2,
                    read_timeout=30,
                    retries={"total_max_attempts": 3, "mode": "standard"},
                ),
            )
        return self._client

    def bucket(self, name: str | None = None) -> str:
        """A new bucket (a unique name unless `name` is given, so tests sharing the server do
        not see each other's objects); returns its name."""
        name = name or f"dispatch-test-{uuid.uuid4().hex[:10]}"
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**kwargs)
        return name

    def upload_tree(
        self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = ""
    ) -> list[str]:
        """Every file under `local_dir` put at s3://bucket/prefix/<relative posix path>;
        returns the keys written, sorted."""
        root = Path(local_dir)
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = _folder(prefix) + path.relative_to(root).as_posix()
            self.client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys

    def _objects(self, bucket: str, prefix: str) -> Iterable[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=_folder(prefix))
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys under the folder `prefix` ("a/b" means "a/b/"), relative to it, sorted."""
        start = len(_folder(prefix))
        return sorted(key[start:] for key in self._objects(bucket, prefix))

    def tree(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under the folder `prefix`, keyed by its key relative to the folder: what
        a test compares with the files it expects (as conftest's `tree` does for a folder)."""
        start = len(_folder(prefix))
        client = self.client()
        return {
            key[start:]: client.get_object(Bucket=bucket, Key=key)["Body"].read()
            for key in sorted(self._objects(bucket, prefix))
        }

    def multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        """The multipart uploads still in progress in `bucket` (each a dict with Key and
        UploadId): an aborted or completed upload is not among them."""
        pages = self.client().get_paginator("list_multipart_uploads").paginate(Bucket=bucket)
        return [upload for page in pages for upload in page.get("Uploads", [])]

    def mark(self) -> int:
        """Where the request log stands now, for `requests` (0 where nothing is counted)."""
        return 0

    def requests(self, since: int) -> list[tuple[str, str]] | None:
        """The requests the server answered after `mark()` returned `since`; None here: an
        outside store's requests cannot be seen (`counts_requests` is False)."""
        return None

    def stop(self) -> None:
        """Nothing to stop for an outside store."""


class S3Server(S3Endpoint):
    """moto's standalone S3 server (`python -u -m moto.server`) on a free port of 127.0.0.1,
    its output in a log file that `requests` reads.

    The access log is werkzeug's (the `werkzeug` logger, to stderr, one line per request,
    written when the response's status line is sent, so before the client sees the answer):

        127.0.0.1 - - [07/Dec/2026 04:21:23] "GET /bucket?list-type=2 HTTP/1.1" 200 -

    A status other than 200 or 304 wraps the quoted part in ANSI colour codes (werkzeug adds
    them even when stderr is a file); they are stripped. The target is the path and query as
    the client sent them through werkzeug's `uri_to_iri`: percent-escapes of UTF-8 text and of
    "/" and "=" in the query are decoded ("?prefix=a/&delimiter=/"), while those of spaces, "%"
    and "/" in the path are kept ("/b/a%20b"). Keys are addressed path-style ("/bucket/key").
    Lines of any other shape (the banner, tracebacks) are skipped, as are requests to
    /moto-api (the readiness probe)."""

    counts_requests = True

    def __init__(self, port: int, process: subprocess.Popen[bytes], folder: Path) -> None:
        super().__init__(f"http://127.0.0.1:{port}", "testing", "testing", local=True)
        self.port = port
        self.process = process
        self.folder = folder
        self.log_path = folder / "moto_server.log"

    @classmethod
    def start(cls, page_size: int | None = None, attempts: int = 3) -> S3Server:
        """A server started and answering; another free port is tried when the server exits
        at once (the port was taken between finding it and binding it). `page_size` replaces S3's 1000 keys per
        listing page (MOTO_S3_DEFAULT_MAX_KEYS), so a test can paginate with a few keys."""
        env = _server_env()
        if page_size is not None:
            env["MOTO_S3_DEFAULT_MAX_KEYS"] = str(page_size)
        for attempt in range(attempts):
            folder = Path(tempfile.mkdtemp(prefix="dispatch-moto-"))
            port = _free_port()
            with open(folder / "moto_server.log", "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-u", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            server = cls(port, process, folder)
            try:
                server._wait_until_answering()
            except Exception:
                exited = process.poll() is not None
                server.stop()
                if not exited or attempt == attempts - 1:
                    raise
                continue
            return server
        raise AssertionError("unreachable")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto server did not answer on {self.endpoint} within "
                    f"{START_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for a failure message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def mark(self) -> int:
        """The byte offset just past the last complete line of the access log."""
        data = self.log_path.read_bytes()
        return data.rfind(b"\n") + 1

    def requests(self, since: int) -> list[tuple[str, str]]:
        """(HTTP method, path and query) of every request logged after `mark()` returned
        `since`, in the order the server answered them; see the class docstring."""
        data = self.log_path.read_bytes()
        data = data[since : data.rfind(b"\n") + 1]
        found = []
        for raw in data.decode("utf-8", errors="replace").splitlines():
            match = _ACCESS_LINE.match(_ANSI.sub("", raw))
            if match and not match["target"].startswith("/moto-api"):
                found.append((match["method"], match["target"]))
        return found

    def stop(self) -> None:
        """The server terminated (killed after 5 s); its temporary folder removed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    """The server's environment: this one without proxies or AWS credentials (moto needs none,
    and nothing it does should reach out)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("AWS_")
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONIOENCODING"] = "utf-8"  # the log is read as UTF-8 whatever the locale
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env
