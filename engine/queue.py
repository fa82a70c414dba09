"""One model serves every game: requests from different games are gathered into batched model calls, the
most urgent first.

``BatchingWriter`` is itself a ``SceneWriter`` in front of the real one. Requests wait in a bounded queue;
a worker takes up to ``max_batch`` of them (after a short gathering window) into one call, choosing by each
request's ``Priority`` as it stands at that moment: a scene a player waits for first, then every game's
leading branch, then every game's second, and so on (oldest first within a rank). So the winner of a vote is
never starved by other games' losers, and a game gets its leading branch before anyone gets a third one.
A request the engine dropped (its vote closed on another choice) is skipped, never written.

When the queue is full, a new request takes the place of the least urgent queued branch if it outranks it
(that branch's caller sees it cancelled); otherwise it fails at once with ``StorytellerBusyError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import StorytellerBusyError
from engine.ports import WAITING, SceneWriter, WriteRequest, WrittenScene

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


class BatchingWriter:
    def __init__(self, writer: SceneWriter, max_batch: int = 8, max_pending: int = 256,
                 gather_seconds: float = 0.01) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.gather_seconds = gather_seconds
        self.batches: list[int] = []  # sizes of the calls made, for tests and benchmarks
        self.shed = 0  # queued branches given up to make room for more urgent requests
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def model_version(self) -> str:
        return self.writer.model_version

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        loop = asyncio.get_running_loop()
        items = [_Pending(request, loop.create_future()) for request in requests]
        self._make_room(items)
        self._queue.extend(items)
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
        overflow = self.pending + len(items) - self.max_pending
        if overflow <= 0:
            return
        newest = min(item.urgency() for item in items)
        worst = sorted(self._queue, key=lambda item: (item.urgency(), item.order))[-overflow:]
        if len(worst) < overflow or any(item.urgency() <= newest for item in worst):
            raise StorytellerBusyError("the storyteller is busy, try again in a moment")
        for item in worst:
            self._queue.remove(item)
            item.future.cancel()
        self.shed += len(worst)

    def _next_batch(self) -> list[_Pending]:
        live = sorted(self._live(), key=lambda item: (item.urgency(), item.order))
        batch = live[: self.max_batch]
        self._queue = live[self.max_batch:]
        for item in batch:
            if item.request.priority is not None:
                item.request.priority.started = True
        return batch

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(self.gather_seconds)  # let concurrent games add their requests
            live = self._next_batch()
            if not live:
                continue
            self.batches.append(len(live))
            try:
                answers = await self.writer.write([item.request for item in live])
                if len(answers) != len(live):
                    raise RuntimeError(f"the writer answered {len(answers)} of {len(live)} requests")
            except Exception as exc:  # every waiter gets the writer's error; the worker goes on
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, answer in zip(live, answers, strict=True):
                if not item.future.done():
                    item.future.set_result(answer)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
