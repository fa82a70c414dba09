"""Tables without Discord: a recording presenter, the fake writer and the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import GameRuleError, StorytellerBusyError
from engine.fakes import FakeWriter, MemoryStore, RecordingPresenter
from engine.game import Game
from engine.ports import WriteRequest, WrittenScene
from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.turns import StoryEngine


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


Recorder = RecordingPresenter


class FlakyWriter(FakeWriter):
    """Writes the opening, then is busy for everything else."""

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if self.calls:
            raise StorytellerBusyError("the storyteller is busy, try again in a moment")
        return await super().write(requests)


def test_a_busy_storyteller_at_the_close_reopens_the_vote_with_its_votes() -> None:
    async def scenario() -> tuple[Game, Recorder]:
        clock, shown = Clock(), Recorder()
        tables = Tables(StoryEngine(FlakyWriter()), MemoryStore(), shown, clock=clock)
        game = await tables.start("s", "c", "ana", "fantasy", "A knight wakes.")
        await tables.vote(game.place, "ana", 1, "message-1")
        await asyncio.sleep(0)  # the branches fail to be written in advance (busy): nothing to show at once
        clock.now += timedelta(seconds=61)
        async with tables._lock(game):
            await tables._close(game)
        await tables.close()
        return game, shown

    game, shown = asyncio.run(scenario())
    assert shown.failures == ["the storyteller is busy, try again in a moment"]
    assert len(game.path) == 1 and game.current.chosen is None and game.status == "waiting"
    assert [(v.player, v.choice) for v in game.current.votes] == [("ana", 1)]
    assert game.current.vote_deadline is not None


def test_two_starts_at_once_in_one_channel_make_one_game() -> None:
    async def scenario() -> list[object]:
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), Recorder(), clock=Clock())
        results = await asyncio.gather(tables.start("s", "c", "ana", premise="A knight wakes."),
                                       tables.start("s", "c", "ben", premise="A knight wakes."),
                                       return_exceptions=True)
        await tables.close()
        return results

    results = asyncio.run(scenario())
    assert sum(isinstance(r, Game) for r in results) == 1
    assert sum(isinstance(r, GameRuleError) for r in results) == 1


def test_settings_survive_in_the_store_and_bad_values_are_refused() -> None:
    async def scenario() -> tuple[int, dict[str, object]]:
        store = MemoryStore()
        tables = Tables(StoryEngine(FakeWriter()), store, Recorder())
        await tables.configure("s", quorum=3)
        with pytest.raises(GameRuleError, match="max_games"):
            await tables.configure("s", max_games=0)
        again = Tables(StoryEngine(FakeWriter()), store, Recorder())
        return (await again.settings("s")).quorum, await store.server_settings("s")

    assert asyncio.run(scenario()) == (3, {"quorum": 3})


def test_each_branch_is_saved_as_soon_as_it_is_written() -> None:
    """One model call a branch; the second hangs: the first is in the store already, not only when all are."""

    class HangsOnSecond(FakeWriter):
        async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
            if any(r.context.path and r.context.path[-1].action.endswith("-b") for r in requests):
                await asyncio.sleep(3600)
            return await super().write(requests)

    async def scenario() -> tuple[Game, Game]:
        store = MemoryStore()
        tables = Tables(StoryEngine(BatchingWriter(HangsOnSecond(), max_batch=1, gather_seconds=0)), store,
                        Recorder(), clock=Clock())
        game = await tables.start("s", "c", "ana", "fantasy", "A knight wakes.")
        for _ in range(50):
            await asyncio.sleep(0.01)
            if game.current.branches:
                break
        await asyncio.sleep(0.05)
        stored = await store.load(game.id)
        await tables.close()
        return game, stored

    game, stored = asyncio.run(scenario())
    assert sorted(game.current.branches) == [0]  # the first written, the second hangs, the third waits
    assert sorted(stored.current.branches) == [0]
    assert stored.current.branches[0].narration == game.current.branches[0].narration
