from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.errors import StorytellerBusyError
from engine.fakes import FakeWriter
from engine.game import GameStatus
from engine.ports import WriteRequest, WrittenScene
from engine.prompt_format import StoryContext
from engine.queue import BatchingWriter
from engine.turns import StoryEngine
from engine.votes import standings, tie_seed


class SlowWriter(FakeWriter):
    """A fake that holds every call until released, so requests pile up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        await self.release.wait()
        return await super().write(requests)


def request(genre: str) -> WriteRequest:
    return WriteRequest(StoryContext(genre, "A premise."))


def test_requests_from_different_games_share_one_call() -> None:
    async def scenario() -> tuple[list[int], list[list[str]]]:
        inner = FakeWriter()
        queue = BatchingWriter(inner, max_batch=8, gather_seconds=0.02)
        await asyncio.gather(queue.write([request("mecha"), request("mecha")]), queue.write([request("idol")]),
                             queue.write([request("sports")] * 3))
        return queue.batches, [[r.context.genre for r in call] for call in inner.calls]

    batches, calls = asyncio.run(scenario())
    assert batches == [6] and len(calls) == 1 and sorted(set(calls[0])) == ["idol", "mecha", "sports"]


def test_batches_are_bounded_and_answers_return_to_their_callers() -> None:
    async def scenario() -> tuple[list[int], list[list[WrittenScene]]]:
        queue = BatchingWriter(FakeWriter(), max_batch=3, gather_seconds=0.01)
        answers = await asyncio.gather(*(queue.write([request(g)]) for g in ("mecha", "idol", "sports", "cooking")))
        return queue.batches, answers

    batches, answers = asyncio.run(scenario())
    assert batches == [3, 1]
    assert [len(a) for a in answers] == [1, 1, 1, 1]
    # The fake numbers its scenes in the order it wrote them: each caller got the answer to its own request.
    assert [f"Scene {n}." in a[0].text for n, a in enumerate(answers, 1)] == [True] * 4


def test_a_full_queue_says_busy_at_once() -> None:
    async def scenario() -> None:
        slow = SlowWriter()
        queue = BatchingWriter(slow, max_batch=1, max_pending=2, gather_seconds=0.0, tenant_share=1.0)
        first = asyncio.create_task(queue.write([request("mecha")] * 2))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(queue.write([request("idol")]))
        await asyncio.sleep(0.01)
        assert queue.pending == 2  # one request is in the model call, two wait: the queue is full
        with pytest.raises(StorytellerBusyError, match="the storyteller is busy, try again in a moment"):
            await queue.write([request("idol")])
        engine = StoryEngine(queue)
        with pytest.raises(StorytellerBusyError):
            await engine.start("t", "idol", "A new game while the queue is full.")
        slow.release.set()
        assert len(await first) == 2 and len(await second) == 1

    asyncio.run(scenario())


def test_busy_branches_fall_back_to_writing_on_demand() -> None:
    async def scenario() -> tuple[list[int], list[int], GameStatus, str, str]:
        queue = BatchingWriter(FakeWriter(), max_batch=8, max_pending=2, tenant_share=1.0)
        engine = StoryEngine(queue)
        game = await engine.start("t", "mecha", "A pilot wakes.")
        order = standings(game.current, tie_seed(game))  # no votes yet: the tie-break draw's choice first
        # Three branches, a queue of two: the two leading choices are written, the third is refused as busy.
        written = sorted(await engine.pregenerate(game))
        last = game.current.scene.choices[order[2]]
        await engine.choose(game, order[2])  # the branch that was not written: written now, on demand
        return written, sorted(order[:2]), game.status, game.current.scene.narration, last

    written, leading, status, narration, last = asyncio.run(scenario())
    assert written == leading and status == GameStatus.WAITING
    assert f"You {last[:1].lower()}{last[1:]}" in narration
