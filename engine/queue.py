"""One model serves every game: requests from different games are gathered into batched model calls, the
most urgent first, shared fairly between tenants (Discord servers).

``BatchingWriter`` is itself a ``SceneWriter`` in front of the real one. Requests wait in a bounded queue;
a worker takes up to ``max_batch`` of them (after a short gathering window) into one call, choosing by each
request's ``Priority`` as it stands at that moment: a scene a player waits for first, then every game's
leading branch, then the others by how close their choice is to winning (``engine.votes.branch_urgencies``;
oldest first within a rank). So the winner of a vote is never starved by other games' losers, and a game
gets its leading branch before anyone gets another one. A request the engine dropped (its vote closed on
another choice) is skipped, never written.

**Fair sharing.** Each tenant's requests are ranked on their own; the batch takes every tenant's best
request before anyone's second (round robin, most urgent first within a round). A server that floods the
queue only lengthens its own wait: another server's waiting player or leading branch goes into the next
batch whatever the flood. The queue is bounded per tenant too (``tenant_share`` of ``max_pending``).

**Room.** When the queue (or a tenant's share of it) is full, a new request takes the place of that
tenant's, or else the biggest tenant's, least urgent queued branch if it outranks it (that branch's caller
sees it cancelled); otherwise it fails at once with ``StorytellerBusyError``.

**Overlapping writers.** A writer that batches continuously (``engine.ports.overlapping_slots``: the llama.cpp
path) gets each request as its own call, started the moment it has a free slot, up to its slots at once; the
choice of which request goes next is made then, by the same order. A scene a player waits for so starts when
the next sequence finishes rather than after a whole batch, and short answers never wait for long ones.
Every sequence being written slows every other one's steps (on 2 cores, 16 at once take 65 ms a token, 8 take
40), so **speculative** requests (a branch that is neither waited for nor leading its vote) start only while
fewer than ``speculative_share`` of the slots are busy; a waited-for scene or a leading branch may take them
all. At light load the winners so come sooner; under saturation the model's time goes to winners, not losers.

**Faults.** A call gets ``deadline_seconds``; past it every request of the batch fails with
``StorytellerTimeoutError`` (the worker goes on with the next batch). A call that raises is tried again one
request at a time, so a single poisonous request fails alone and the rest of its batch is written; what
still fails is converted to ``StorytellerFailedError`` (the original chained and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import CyoaError, StorytellerBusyError, StorytellerFailedError, StorytellerTimeoutError
from engine.measures import Durations
from engine.ports import LEADING, WAITING, SceneWriter, WriteRequest, WrittenScene, overlapping_slots

log = logging.getLogger(__name__)

_ORDER = itertools.count()


@dataclass
class _Pending:
    request: WriteRequest
    future: asyncio.Future[WrittenScene]
    order: int = field(default_factory=lambda: next(_ORDER))

    def urgency(self) -> int:
        priority = self.request.priority
        return WAITING if priority is None else priority.urgency()

    @property
    def dropped(self) -> bool:
        return self.future.done() or (self.request.priority is not None and self.request.priority.dropped)


def _rank(item: _Pending) -> tuple[int, int]:
    return item.urgency(), item.order


def fair_order(items: Sequence[_Pending]) -> list[_Pending]:
    """Round robin over tenants: every tenant's most urgent request, then every tenant's second, and so on;
    within a round the more urgent (then the older) first."""
    turn: Counter[str] = Counter()
    keyed = []
    for item in sorted(items, key=_rank):
        keyed.append(((turn[item.request.tenant], *_rank(item)), item))
        turn[item.request.tenant] += 1
    return [item for _, item in sorted(keyed, key=lambda pair: pair[0])]


class BatchingWriter:
    def __init__(self, writer: SceneWriter, max_batch: int = 8, max_pending: int = 256,
                 gather_seconds: float = 0.01, deadline_seconds: float | None = 180.0,
                 tenant_share: float = 0.5, speculative_share: float = 0.5) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.gather_seconds = gather_seconds
        # A hung generation must not hold a game (and every game batched with it) forever. The default is
        # far above a healthy batch (a few seconds on 2 cores) so only a real hang trips it.
        self.deadline_seconds = deadline_seconds
        self.tenant_pending = max(1, int(max_pending * tenant_share))
        self.batches: list[int] = []  # sizes of the calls made, for tests and benchmarks
        self.shed = 0  # queued branches given up to make room for more urgent requests
        self.faults = 0  # model calls that raised or passed their deadline
        self.call_seconds = Durations()  # each model call, for the service's metrics
        self.written = 0  # scenes answered
        self.overlapping = overlapping_slots(writer)  # requests in flight at once; 0: one call at a time
        # Requests in flight below which a speculative one may still start (overlapping writers only).
        self.speculative_slots = max(1, round(self.overlapping * speculative_share))
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()  # overlapping calls in flight
        self._room = asyncio.Event()  # set when an overlapping call ends

    @property
    def model_version(self) -> str:
        return self.writer.model_version

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """A request is queued or being written (``close`` now would leave its caller waiting)."""
        return bool(self._queue) or bool(self._calls) or (self._worker is not None and not self._worker.done())

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        loop = asyncio.get_running_loop()
        items = [_Pending(request, loop.create_future()) for request in requests]
        self._make_room(items)
        self._queue.extend(items)
        self._room.set()  # an overlapping dispatcher waiting for room looks again: this one may start now
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return list(await asyncio.gather(*(item.future for item in items)))

    def _live(self) -> list[_Pending]:
        """The queue without the requests the engine dropped (their callers see them cancelled)."""
        live = []
        for item in self._queue:
            if item.dropped:
                item.future.cancel()
            else:
                live.append(item)
        return live

    def _make_room(self, items: list[_Pending]) -> None:
        self._queue = self._live()
        for tenant, count in Counter(item.request.tenant for item in items).items():
            mine = [item for item in self._queue if item.request.tenant == tenant]
            self._shed(mine, len(mine) + count - self.tenant_pending, items)
        overflow = self.pending + len(items) - self.max_pending
        if overflow > 0:
            biggest = Counter(item.request.tenant for item in self._queue).most_common(1)[0][0]
            self._shed([item for item in self._queue if item.request.tenant == biggest], overflow, items)

    def _shed(self, candidates: list[_Pending], overflow: int, items: list[_Pending]) -> None:
        """Give up the ``overflow`` least urgent of ``candidates`` if the new ``items`` outrank each of them."""
        if overflow <= 0:
            return
        newest = min(item.urgency() for item in items)
        worst = sorted(candidates, key=_rank)[-overflow:]
        if len(worst) < overflow or any(item.urgency() <= newest for item in worst):
            raise StorytellerBusyError("the storyteller is busy, try again in a moment")
        for item in worst:
            self._queue.remove(item)
            item.future.cancel()
        self.shed += len(worst)

    def _next_batch(self, room: int | None = None, in_flight: int | None = None) -> list[_Pending]:
        """The next requests to write, in order, at most ``room`` (``max_batch``). ``in_flight``: requests an
        overlapping writer is writing now; a speculative one is taken only while fewer than
        ``speculative_slots`` would be."""
        size = self.max_batch if room is None else room
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        for item in fair_order(self._live()):
            held = (in_flight is not None and item.urgency() > LEADING
                    and in_flight + len(batch) >= self.speculative_slots)
            if len(batch) < size and not held:
                batch.append(item)
            else:
                rest.append(item)
        self._queue = rest
        for item in batch:
            if item.request.priority is not None:
                item.request.priority.started = True
        return batch

    async def _call(self, batch: list[_Pending]) -> list[WrittenScene]:
        """One model call with its deadline; the answers, one per request, or the error (converted)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline_seconds):
                answers = await self.writer.write([item.request for item in batch])
        except TimeoutError as exc:
            self.faults += 1
            log.error("the storyteller %s passed its %.0f s deadline on a batch of %d", self.model_version,
                      self.deadline_seconds or 0, len(batch))
            raise StorytellerTimeoutError(f"the storyteller took longer than {self.deadline_seconds:.0f} s and "
                                          "was given up") from exc
        except CyoaError:
            raise
        except Exception as exc:
            self.faults += 1
            raise StorytellerFailedError(f"the storyteller failed ({type(exc).__name__})") from exc
        if len(answers) != len(batch):
            self.faults += 1
            raise StorytellerFailedError(f"the storyteller answered {len(answers)} of {len(batch)} requests")
        self.call_seconds.observe(time.monotonic() - started)
        self.written += len(answers)
        return answers

    async def _serve(self, batch: list[_Pending]) -> None:
        """Write ``batch``; if the call fails (other than by its deadline), each request alone."""
        try:
            answers = await self._call(batch)
        except StorytellerTimeoutError as exc:
            self._fail(batch, exc)  # written alone, each would hang again: one deadline is enough
            return
        except CyoaError as exc:
            if len(batch) == 1:
                log.error("a storyteller request failed: %s", exc, exc_info=exc.__cause__)
                self._fail(batch, exc)
                return
            log.warning("a batch of %d failed (%s); writing its requests one at a time", len(batch), exc)
            for item in batch:
                await self._serve([item])
            return
        for item, answer in zip(batch, answers, strict=True):
            if not item.future.done():
                item.future.set_result(answer)

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(self.gather_seconds)  # let concurrent games add their requests
            if self.overlapping:
                await self._dispatch()
                continue
            live = self._next_batch()
            if not live:
                continue
            self.batches.append(len(live))
            try:
                await self._serve(live)
            except Exception:  # a bug here must not leave callers waiting forever
                log.exception("the storyteller queue failed on a batch")
                self._fail(live, StorytellerFailedError("the storyteller queue failed"))

    async def _dispatch(self) -> None:
        """Overlapping writer: start the most urgent requests that may start now, one call each; then, if any
        are left, wait until a call ends or a request arrives."""
        live = self._next_batch(self.overlapping - len(self._calls), len(self._calls))
        if live:
            self.batches.append(len(live))
        for item in live:
            call = asyncio.get_running_loop().create_task(self._serve_guarded([item]))
            self._calls.add(call)
            call.add_done_callback(self._call_ended)
        if self._queue:
            self._room.clear()
            await self._room.wait()

    def _call_ended(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        self._room.set()

    async def _serve_guarded(self, batch: list[_Pending]) -> None:
        try:
            await self._serve(batch)
        except asyncio.CancelledError:  # the queue is closing: its callers are told rather than left waiting
            for item in batch:
                item.future.cancel()
            raise
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("the storyteller queue failed on a request")
            self._fail(batch, StorytellerFailedError("the storyteller queue failed"))

    async def close(self) -> None:
        calls = [self._worker, *self._calls] if self._worker is not None else list(self._calls)
        for call in calls:
            call.cancel()
        for call in calls:
            with contextlib.suppress(asyncio.CancelledError):
                await call
