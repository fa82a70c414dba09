"""One model serves every game: requests from different games are gathered into batched model calls.

``BatchingWriter`` is itself a ``SceneWriter`` in front of the real one. Requests wait in a bounded queue;
a worker takes up to ``max_batch`` of them (after a short gathering window) into one call. When the queue
is full, a new request fails at once with ``StorytellerBusyError`` instead of waiting without end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import StorytellerBusyError
from engine.ports import SceneWriter, WriteRequest, WrittenScene


@dataclass
class _Pending:
    request: WriteRequest
    future: asyncio.Future[WrittenScene]


class BatchingWriter:
    def __init__(self, writer: SceneWriter, max_batch: int = 8, max_pending: int = 64,
                 gather_seconds: float = 0.01) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.gather_seconds = gather_seconds
        self.batches: list[int] = []  # sizes of the calls made, for tests and benchmarks
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def model_version(self) -> str:
        return self.writer.model_version

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if self.pending + len(requests) > self.max_pending:
            raise StorytellerBusyError("the storyteller is busy, try again in a moment")
        loop = asyncio.get_running_loop()
        items = [_Pending(request, loop.create_future()) for request in requests]
        self._queue.extend(items)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(self.gather_seconds)  # let concurrent games add their requests
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            live = [item for item in batch if not item.future.done()]
            if not live:
                continue
            self.batches.append(len(live))
            try:
                answers = await self.writer.write([item.request for item in live])
            except Exception as exc:  # every waiter gets the writer's error
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
