"""The driver's side of a Ray run: actors started and replaced, chunks of items fed to
them, reports settled into outcomes, and a stop carried out within the grace period.

Everything the run reports happens here, in the driver: one progress display, summary and
run record, as for every engine. An actor that dies (killed, out of memory, its node
lost) costs only the items of the chunks it held: those whose outputs were committed
before it died succeed (the done check says so), the others fail, and a new actor takes
its place.
"""

from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass, field
from typing import Any

from dispatcher.engines import (
    Item,
    ItemLedger,
    Outcome,
    RunContext,
    error_line,
)

PIPELINE_DEPTH = 2
"""Chunks an actor holds at once: the one it runs and the next, waiting in its mailbox."""
TARGET_CHUNK_SECONDS = 0.05
"""Items per chunk are sized to about this much work, from measured item times."""
MAX_CHUNK = 1024
POLL_SECONDS = 0.2
"""Longest the driver waits on Ray: bounds how late a signal is noticed."""
BARREN_DEATHS_LIMIT = 3
"""Actors in a row that die or fail setup before running an item end the run."""
TEARDOWN_SECONDS = 30.0
SETUP_WAIT = 5.0
"""At the end, how long an actor still in setup() may take to finish it (and tear down)."""


_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def ray_error_line(exc: BaseException) -> str:
    """The error line of a Ray failure, told by what caused it (a call's error wraps its
    cause), without Ray's terminal colours."""
    while getattr(exc, "cause", None) is not None:
        exc = exc.cause  # type: ignore[attr-defined]
    return _ESCAPES.sub("", error_line(exc))


@dataclass
class _Chunk:
    gen: Any
    """The streaming ObjectRefGenerator of its run_chunk call."""
    seqs: list[int]
    alone: bool
    acked: int = 0
    """Items settled from its progress so far (a prefix of `seqs`)."""


@dataclass
class _Actor:
    handle: Any
    setup: Any
    """The ObjectRef of its setup() call; None once it answered."""
    ready: bool = False
    chunks: list[_Chunk] = field(default_factory=list)
    """Chunks sent and not finished, in the order sent: the first is running."""
    killed: bool = False


class Driver:
    """Feeds `context.items` to `count` actors of `actor_cls` until every item is settled."""

    def __init__(
        self,
        ray: Any,
        context: RunContext,
        actor_cls: Any,
        count: int,
        workdir: str,
        device: str | None,
        retries: int,
        batch_size: int | None,
    ) -> None:
        self.ray = ray
        self.stage = context.stage
        self.items: list[Item] = context.items
        self.reporter = context.reporter
        self.stop = context.stop
        self.lease = context.lease
        self.actor_cls = actor_cls
        self.count = max(1, min(count, len(self.items)))
        self.workdir = workdir
        self.device = device
        self.batch_size = batch_size
        self.ledger = ItemLedger(self.items, self.reporter, retries)
        self.pending: collections.deque[int] = collections.deque(range(len(self.items)))
        self.single: set[int] = set()
        """Items that go out alone: their chunk could not be sent, or its call failed."""
        self.actors: list[_Actor] = []
        self.halting = False
        self.barren_deaths = 0
        self.ran = 0
        self.busy = 0.0

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while True:
            if (self.stop.is_set() or self.reporter.aborted) and not self.halting:
                self._halt()
            busy = any(a.chunks for a in self.actors)
            if not self.halting:
                if not self.pending and not busy:
                    again = self.ledger.take_again()
                    if not again:
                        return
                    self.pending.extend(again)
                self._feed()
            elif not busy:
                return
            else:
                deadline = self.stop.deadline()
                if deadline is not None and time.monotonic() >= deadline:
                    for actor in [a for a in self.actors if a.chunks]:
                        self._kill(actor)
            self._let_newcomers_in()
            self.reporter.tick()
            self._wait()

    def _feed(self) -> None:
        wanted = min(self.count, len(self.pending) + sum(1 for a in self.actors if a.chunks))
        while len(self.actors) < wanted:
            self._start()
        for actor in self.actors:
            while actor.ready and self.pending and len(actor.chunks) < PIPELINE_DEPTH:
                self._send(actor)

    def _chunk_size(self) -> int:
        if self.pending and self.pending[0] in self.single:
            return 1
        if self.batch_size is not None:
            return self.batch_size
        if not self.ran:
            return 1  # the first items measure how long an item takes
        size = int(TARGET_CHUNK_SECONDS / max(self.busy / self.ran, 1e-6))
        fair = -(-len(self.pending) // (PIPELINE_DEPTH * self.count))  # the end stays balanced
        return max(1, min(size, fair, MAX_CHUNK))

    def _send(self, actor: _Actor) -> None:
        size = self._chunk_size()
        seqs = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
        alone = bool(self.lease is not None and self.lease.alone())
        call = actor.handle.run_chunk.options(num_returns="streaming")
        try:
            gen = call.remote(alone, [(seq, self.items[seq]) for seq in seqs])
        except Exception as exc:  # an item Ray cannot serialize: each is tried alone
            if len(seqs) == 1:
                key = self.items[seqs[0]][0]
                error = f"item cannot be sent to a Ray actor: {ray_error_line(exc)}"
                self.ledger.record(seqs[0], Outcome(key, False, error))
            else:
                self.single.update(seqs)
                self.pending.extendleft(reversed(seqs))
            return
        actor.chunks.append(_Chunk(gen, seqs, alone))

    def _let_newcomers_in(self) -> None:
        """Once another run came to the output roots, drop the lease's flag as soon as no
        chunk sent alone is running (from then on every item is claimed)."""
        lease = self.lease
        alone = any(c.alone for a in self.actors for c in a.chunks)
        if lease is not None and lease.switching and not alone:
            lease.drained()

    def _start(self) -> None:
        handle = self.actor_cls.remote(self.stage, self.workdir, self.device)
        self.actors.append(_Actor(handle, handle.setup.remote()))

    def _halt(self) -> None:
        """No new items: actors finish the item in hand; the rest of their chunks wait."""
        self.halting = True
        for actor in self.actors:
            if actor.chunks:
                actor.handle.halt.options(concurrency_group="control").remote()

    # --- answers --------------------------------------------------------------------------

    def _wait(self) -> None:
        owner: dict[int, tuple[_Actor, _Chunk | None]] = {}
        waited: list[Any] = []
        for actor in self.actors:
            if actor.setup is not None:
                owner[id(actor.setup)] = (actor, None)
                waited.append(actor.setup)
            for chunk in actor.chunks:
                owner[id(chunk.gen)] = (actor, chunk)
                waited.append(chunk.gen)
        if not waited:
            time.sleep(POLL_SECONDS / 4)
            return
        ready, _ = self.ray.wait(waited, num_returns=1, timeout=POLL_SECONDS)
        if ready:
            ready, _ = self.ray.wait(waited, num_returns=len(waited), timeout=0)
        for thing in ready:
            actor, chunk = owner[id(thing)]
            if actor not in self.actors:
                continue  # settled as dead by an earlier answer
            if chunk is None:
                self._on_setup(actor)
            elif chunk in actor.chunks:
                self._on_progress(actor, chunk)

    def _on_setup(self, actor: _Actor) -> None:
        ref, actor.setup = actor.setup, None
        try:
            failure = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self._on_death(actor, ray_error_line(exc))
            return
        if failure is not None:
            self._forget(actor)
            self.ray.kill(actor.handle, no_restart=True)
            error, tb = failure
            self.reporter.abort(f"task setup failed in a Ray actor: {error}", tb)
            return
        actor.ready = True

    def _on_progress(self, actor: _Actor, chunk: _Chunk) -> None:
        try:
            ref = next(chunk.gen)
            progress = self.ray.get(ref)
        except StopIteration:  # the chunk ended; what it did not run was halted before
            actor.chunks.remove(chunk)
            self.pending.extendleft(reversed(chunk.seqs[chunk.acked :]))
            return
        except self.ray.exceptions.RayActorError as exc:
            self._on_death(actor, ray_error_line(exc))
            return
        except self.ray.exceptions.RayError as exc:  # the actor lives: the call failed
            actor.chunks.remove(chunk)
            unsettled = chunk.seqs[chunk.acked :]
            if len(unsettled) > 1:  # which item broke it (one its arguments cannot be
                self.single.update(unsettled)  # rebuilt from, say) is found alone
                self.pending.extendleft(reversed(unsettled))
                return
            self._settle_lost(chunk, f"its Ray call failed: {ray_error_line(exc)}", True)
            return
        ran, busy, reports, stage_failed = progress
        self.ran += ran
        self.busy += busy
        if ran:
            self.barren_deaths = 0
        bad = {report[0]: report for report in reports}
        for seq in chunk.seqs[chunk.acked : chunk.acked + ran]:
            report = bad.get(seq)
            key = self.items[seq][0]
            if report is None:
                self.ledger.record(seq, Outcome(key, True))
            elif report[1]:
                self.ledger.record(seq, Outcome(key, True, elsewhere=True))
            else:
                _, _, error, tb, malformed = report
                self.ledger.record(seq, Outcome(key, False, error, tb, malformed=malformed))
        chunk.acked += ran
        if stage_failed is not None:
            self.reporter.abort(*stage_failed)

    def _on_death(self, actor: _Actor, error: str) -> None:
        """The actor is gone. Of its running chunk, the items it did not report on are done
        (they succeeded), in flight (the first not done: it fails, or a whole batch does) or
        not begun; those not begun, and its queued chunks, go back to the queue. A new actor
        takes its place unless the run is stopping."""
        chunks = list(actor.chunks)
        self._forget(actor)
        stopping = actor.killed or self.halting
        if not actor.ready or not chunks:  # it held no item: never loop on such deaths
            self._on_barren_death(error)
        elif not stopping:
            self.reporter.note(f"a Ray actor died: {error}")
        for i, chunk in enumerate(chunks):
            self._settle_lost(chunk, None if stopping else f"its Ray actor died: {error}", i == 0)

    def _settle_lost(self, chunk: _Chunk, error: str | None, running: bool) -> None:
        """The items of a chunk whose actor is gone, beyond those it reported on: the done
        ones succeeded; in a `running` chunk the first other one was in flight (all of them,
        for a batch) and fails with `error` (None: a stopped run abandoned it, and it counts
        as not run); the rest never began and run again."""
        seqs = chunk.seqs[chunk.acked :]
        if not seqs:
            return
        done = list(self.stage.source.done_mask([self.items[seq] for seq in seqs]))
        again: list[int] = []
        in_flight = running
        for seq, is_done in zip(seqs, done, strict=True):
            key = self.items[seq][0]
            if is_done:
                self.ledger.record(seq, Outcome(key, True))
            elif in_flight:
                in_flight = self.stage.batched  # a batch is in flight whole
                if error is not None:
                    self.ledger.record(seq, Outcome(key, False, error))
            else:
                again.append(seq)
        self.pending.extendleft(reversed(again))

    def _on_barren_death(self, error: str) -> None:
        """An actor died holding no item (in setup, say): the run ends after a few in a row."""
        self.barren_deaths += 1
        self.reporter.note(f"a Ray actor died holding no item: {error}")
        if self.barren_deaths >= max(BARREN_DEATHS_LIMIT, self.count):
            self.reporter.abort(
                f"{self.barren_deaths} Ray actors in a row died holding no item: {error}"
            )

    def _forget(self, actor: _Actor) -> None:
        if actor in self.actors:
            self.actors.remove(actor)
        actor.chunks = []

    def _kill(self, actor: _Actor) -> None:
        """Past the grace period: the actor's items are abandoned (their staging is left for
        the next run to remove; committed outputs stay)."""
        actor.killed = True
        self.ray.kill(actor.handle, no_restart=True)

    # --- the end --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Teardown on every actor (within limits), then every actor ends. One still setting
        up gets a moment to finish (then tears down, as a starting `mp` worker does); one
        that never got a CPU just ends."""
        ray = self.ray
        setting_up = {a.setup: a for a in self.actors if a.setup is not None and not a.killed}
        if setting_up:
            done, _ = ray.wait(list(setting_up), num_returns=len(setting_up), timeout=SETUP_WAIT)
            for ref in done:
                actor = setting_up[ref]
                actor.setup = None
                try:
                    actor.ready = ray.get(ref) is None
                except ray.exceptions.RayError:
                    continue
        calls = {
            actor.handle.teardown.remote(): actor
            for actor in self.actors
            if actor.ready and not actor.chunks and not actor.killed
        }
        if calls:
            done, _ = ray.wait(list(calls), num_returns=len(calls), timeout=TEARDOWN_SECONDS)
            for ref in done:
                try:
                    error = ray.get(ref)
                except ray.exceptions.RayError:
                    continue
                if error:
                    self.reporter.note(f"task teardown failed in a Ray actor: {error}")
        for actor in self.actors:
            ray.kill(actor.handle, no_restart=True)
        self.actors.clear()
