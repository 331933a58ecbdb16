"""Committing outputs to a store that has no rename: never a partial object at a final key.

A single object is staged in a local scratch file and uploaded whole on success
(`storage.transfer.put_file`): the store shows it only once complete, so its key holds the
earlier object or the new one, never a part. Where nothing may be replaced (the plan found
no output) the upload is conditional (`If-None-Match: *`): an object another run committed
meanwhile is kept and this attempt counts as made elsewhere.

A folder is a prefix, and its members cannot appear at once. An attempt uploads its members
under a staging prefix of its own (`.name.dispatch-part-TOKEN/`, a leftover by name), then
takes the item's claim, an object created only if absent (`.name.dispatch-lock`), and while
holding it deletes the earlier folder's done members first, copies the new members in
server-side with the done members last, and deletes its staging prefix and the claim. So a
marker never stands without all of its members, and two attempts never mix members under
one marker: only the claim's holder copies. A claim whose owner is gone (a process of this
host that no longer exists, or a claim older than CLAIM_STALE_SECONDS) is taken over with
a PUT conditional on its ETag, so of two newcomers exactly one gets it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import zlib
from collections.abc import Sequence
from typing import Any

from dispatcher.environment import process_alive
from dispatcher.outputs.claims import LOCK_SUFFIX
from dispatcher.outputs.errors import MissingOutput
from dispatcher.outputs.names import COMPLETE_NAME, STAGING_SUFFIX, attempt_token
from dispatcher.storage import client, local_files, scratch, transfer, urls
from dispatcher.storage.listing import list_prefix
from dispatcher.storage.transfer import ObjectExists

CLAIM_STALE_SECONDS = 600.0
"""A claim is held only while members are copied server-side (seconds): one this old is a
dead owner's, wherever it ran."""
STAGING_STALE_SECONDS = 6 * 3600.0
"""Another host's staging prefix untouched this long is a killed attempt's."""
CLAIM_WAIT_SECONDS = 120.0
CLAIM_POLL_SECONDS = 0.2
_HOST = socket.gethostname()
HOST_TAG = f"{zlib.crc32(_HOST.encode()):08x}"


class ClaimBusy(OSError):
    """Another live attempt held the item's claim for longer than this one waits."""


def object_token() -> str:
    """An attempt's token naming its host too, so a later run can tell a dead owner's
    staging from a live one's (`owner_gone`). No dot: see `names.leftover_final`."""
    return f"{attempt_token()}_{HOST_TAG}"


def owner_gone(token: str, modified: float, stale_after: float) -> bool:
    """Whether the attempt of `token` (an `object_token`) no longer runs: a process of
    this host that is gone, or anything untouched for `stale_after` seconds."""
    pid, _, rest = token.partition("-")
    if rest.rpartition("_")[2] == HOST_TAG and pid.isdigit() and not process_alive(int(pid)):
        return True
    return time.time() - modified > stale_after


def _beside(final: str, marker: str) -> str:
    head, _, tail = final.rstrip("/").rpartition("/")
    root, ext = os.path.splitext(tail)
    return f"{head}/.{root}{marker}{ext}"


def staging_prefix(final: str, token: str) -> str:
    """`s3://b/out/a.mp4` -> `s3://b/out/.a.dispatch-part-TOKEN.mp4`."""
    return _beside(final, f"{STAGING_SUFFIX}-{token}")


def claim_url(final: str) -> str:
    head, _, tail = final.rstrip("/").rpartition("/")
    return f"{head}/.{tail}{LOCK_SUFFIX}"


def token_of(name: str) -> str | None:
    """The attempt token in a staging name (`.a.dispatch-part-TOKEN.mp4`), if any."""
    _, found, rest = name.rpartition(f"{STAGING_SUFFIX}-")
    return rest.split(".", 1)[0] if found else None


class ObjectClaim:
    """An item's claim in a store: an object created only if absent, deleted on release."""

    def __init__(self, final: str, token: str) -> None:
        self.url = claim_url(final)
        self.body = json.dumps({"host": _HOST, "pid": os.getpid(), "token": token}).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            try:
                transfer.put_bytes(self.url, self.body, IfNoneMatch="*")
                return
            except FileExistsError:
                pass
            if self._take_over_if_gone():
                return
            if time.monotonic() > deadline:
                raise ClaimBusy(
                    f"another run has been committing {self.url} for over "
                    f"{CLAIM_WAIT_SECONDS:.0f} s: left to it (a rerun makes it if it failed)"
                )
            time.sleep(CLAIM_POLL_SECONDS)

    def _take_over_if_gone(self) -> bool:
        try:
            body, etag, modified = transfer.get_object(self.url)
            owner = json.loads(body or b"{}")
        except FileNotFoundError:
            return False  # released meanwhile: create it again
        except ValueError:
            owner = {}
        if not owner_gone(str(owner.get("token", "")), modified, CLAIM_STALE_SECONDS):
            return False
        try:
            transfer.put_bytes(self.url, self.body, IfMatch=etag)
        except OSError:
            return False  # another newcomer took it over first
        return True

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            transfer.delete(self.url)


class StagedObject:
    """A local staging file for the object `final`, uploaded whole if the block succeeds
    (`create`: only if nothing is there by then, else `ObjectExists`)."""

    __slots__ = ("final", "create", "local")

    def __init__(self, final: str, *, create: bool = False) -> None:
        self.final = final
        self.create = create
        self.local = ""

    def __enter__(self) -> str:
        self.local = scratch.new_path(urls.name(self.final))
        return self.local

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                if not os.path.lexists(self.local):
                    raise MissingOutput(f"nothing was written to {self.local} for {self.final}")
                transfer.put_file(self.local, self.final, create=self.create)
        finally:
            scratch.remove(self.local)


class StagedObjectFolder:
    """A local staging folder for the prefix `final`, committed by the folder protocol if
    the block succeeds. `required`: files that must be written; `done_members`: what the
    done check reads (copied last); `complete_marker`: COMPLETE_NAME written after them.
    Without `remake`, a folder completed meanwhile is kept (`ObjectExists`)."""

    def __init__(
        self,
        final: str,
        *,
        required: Sequence[str] = (),
        done_members: Sequence[str] = (),
        complete_marker: bool = False,
        remake: bool = False,
    ) -> None:
        self.final = final
        self.required = required
        self.done_members = list(done_members)
        self.complete_marker = complete_marker
        self.remake = remake
        self.local = ""

    def __enter__(self) -> str:
        self.local = scratch.new_path(urls.name(self.final))
        os.makedirs(self.local)
        return self.local

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                missing = [
                    r for r in self.required if not os.path.lexists(os.path.join(self.local, r))
                ]
                if missing:
                    raise MissingOutput(
                        f"the task did not write {', '.join(map(repr, missing))} into {self.local}"
                    )
                self._commit()
        finally:
            scratch.remove(self.local)

    def _commit(self) -> None:
        token = object_token()
        staging = staging_prefix(self.final, token)
        members = sorted(local_files(self.local))
        claim = None
        try:
            for rel in members:
                transfer.put_file(
                    os.path.join(self.local, rel), urls.join(staging, rel), create=False
                )
            claim = ObjectClaim(self.final, token)
            claim.acquire()
            self._replace_members(staging, members)
        finally:
            try:
                transfer.delete_prefix(staging)
            finally:
                if claim is not None:
                    claim.release()

    def _replace_members(self, staging: str, members: list[str]) -> None:
        final = self.final
        final_key, staging_key = urls.split(final)[1], urls.split(staging)[1]
        earlier = list_prefix(final)
        markers = [*self.done_members, *([COMPLETE_NAME] if self.complete_marker else [])]
        if not self.remake and earlier and all(m in earlier for m in markers):
            raise ObjectExists(f"{final} was committed by another run")
        # What says "done" goes first, then the rest of the earlier folder.
        first = [m for m in markers if m in earlier]
        transfer.delete_keys(final, [f"{final_key}/{m}" for m in first])
        transfer.delete_keys(final, [f"{final_key}/{m}" for m in earlier if m not in first])
        last = set(self.done_members)
        for rel in [m for m in members if m not in last] + [m for m in members if m in last]:
            transfer.copy_key(final, f"{staging_key}/{rel}", f"{final_key}/{rel}")
        if self.complete_marker:
            transfer.put_bytes(urls.join(final, COMPLETE_NAME), b"")


def abandoned_claims(root: str, listed: dict[str, Any]) -> list[str]:
    """Claims (keys relative to `root`) whose owner is gone: a holder killed after its
    commit but before it let go. One small read each; there are none after a clean run."""
    gone = []
    for rel, entry in listed.items():
        name = rel.rpartition("/")[2]
        if not (name.startswith(".") and name.endswith(LOCK_SUFFIX)):
            continue
        try:
            owner = json.loads(transfer.read_bytes(urls.join(root, rel)) or b"{}")
        except (OSError, ValueError):
            owner = {}
        if owner_gone(str(owner.get("token", "")), entry.modified, CLAIM_STALE_SECONDS):
            gone.append(rel)
    return gone


def abandoned_leftovers(listed: dict[str, Any]) -> list[str]:
    """Keys (relative to the listed prefix) that killed attempts left in its listing: the
    members of staging prefixes whose owner is gone (by name: host, process, age)."""
    newest: dict[str, float] = {}
    members: dict[str, list[str]] = {}
    for rel, entry in listed.items():
        parts = rel.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part.startswith(".") and token_of(part) is not None:
                prefix = "/".join(parts[: depth + 1])
                members.setdefault(prefix, []).append(rel)
                newest[prefix] = max(newest.get(prefix, 0.0), entry.modified)
                break
    gone = []
    for prefix, keys in members.items():
        token = token_of(prefix.rpartition("/")[2]) or ""
        if owner_gone(token, newest[prefix], STAGING_STALE_SECONDS):
            gone += keys
    return gone


UPLOAD_MARK = "?uploadId="
"""How a leftover multipart upload is named among leftover keys: `URL?uploadId=ID`."""


def abandoned_uploads(root: str) -> list[str]:
    """Multipart uploads below `root` started more than STAGING_STALE_SECONDS ago: parts of
    an upload whose process was killed, invisible at any key but kept (and billed) by the
    store until aborted. One request (up to 1,000 uploads; the next run takes the rest)."""
    bucket, key = urls.split(root)
    prefix = f"{key}/" if key else ""
    page = client.call(root, "list_multipart_uploads", Bucket=bucket, Prefix=prefix)
    now = time.time()
    return [
        f"{urls.join(root, upload['Key'][len(prefix) :])}{UPLOAD_MARK}{upload['UploadId']}"
        for upload in page.get("Uploads", ())
        if now - upload["Initiated"].timestamp() > STAGING_STALE_SECONDS
    ]


def remove_object_leftovers(root: str, leftovers: Sequence[str]) -> int:
    """Delete leftover keys (in batches) and abort leftover uploads; how many went."""
    bucket = urls.split(root)[0]
    keys = []
    for url in leftovers:
        path, found, upload = url.partition(UPLOAD_MARK)
        if not found:
            keys.append(urls.split(url)[1])
            continue
        with contextlib.suppress(FileNotFoundError):  # finished or aborted meanwhile
            client.call(root, "abort_multipart_upload", Bucket=bucket,
                        Key=urls.split(path)[1], UploadId=upload)  # fmt: skip
    transfer.delete_keys(root, keys)
    return len(leftovers)
