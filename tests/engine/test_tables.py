"""Tables without Discord: a recording presenter, the fake writer and the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import GameRuleError, Hint, StorytellerBusyError
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


def test_refusals_name_no_frontend_command_but_carry_a_hint() -> None:
    """The engine says what is wrong; each frontend renders the hint (a slash command, a key) its own way."""

    async def scenario() -> list[GameRuleError]:
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), Recorder(), clock=Clock())
        refusals = []
        attempts: list[Callable[[], Awaitable[Game]]] = [
            lambda: tables.retry(tables.place("s", "c"), "ana"),
            lambda: tables.start("s", "c", "ben", premise="A knight wakes."),
            lambda: tables.end(tables.place("s", "c"), "ben"),
            lambda: tables.start("s", "elsewhere", "ben", premise="A knight wakes.")]
        for attempt in attempts:
            with pytest.raises(GameRuleError) as refused:
                await attempt()
            refusals.append(refused.value)
            if not tables.games:
                await tables.start("s", "c", "ana", premise="A knight wakes.")
                await tables.configure("s", allowed_channels=["c"])
        await tables.close()
        return refusals

    refusals = asyncio.run(scenario())
    assert [r.hint for r in refusals] == [Hint.START, Hint.END, Hint.MODERATOR, Hint.CHANNELS]
    for refusal in refusals:
        assert "/" not in str(refusal) and "Manage Server" not in str(refusal) and "channel" not in str(refusal)


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
        branches = 0

        async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
            if requests[0].context.path:
                self.branches += 1
                if self.branches == 2:
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
    assert len(game.current.branches) == 1  # the first written, the second hangs, the third waits
    [first] = game.current.branches
    assert list(stored.current.branches) == [first]
    assert stored.current.branches[first].narration == game.current.branches[first].narration


def test_the_only_player_decides_at_once_and_a_solo_room_has_no_timers_or_cooldowns() -> None:
    async def scenario() -> tuple[Game, list[int], bool, str, tuple[int | None, list[str]]]:
        shown = Recorder()
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), shown, clock=Clock(), prefix="terminal", solo=True)
        game = await tables.start("local", "slot", "you", "fantasy", "A knight wakes.")
        no_timer = game.id not in tables._timers and tables.frozen() == []  # waiting for its player is not stuck
        await tables.decide(game.place, "you", 1)
        decided = game.path[0].chosen, [v.player for v in game.path[0].votes]  # a recorded vote, then taken
        await tables.retry(game.place, "you", manager=True)  # at once: no cooldown in a one-player room
        await tables.undo(game.place, "you", manager=True)
        with pytest.raises(GameRuleError, match="choice 9 does not exist"):
            await tables.decide(game.place, "you", 8)
        with pytest.raises(GameRuleError, match="other players"):
            await tables.decide(game.place, "ben", 0)  # not the game's one player: no early close for them
        await tables.close()
        return game, shown.shown, no_timer, tables.place("local", "slot"), decided

    game, shown, no_timer, place, decided = asyncio.run(scenario())
    assert no_timer and game.place == place == "terminal:local:slot"
    assert shown == [1, 2, 2, 1]  # the opening, the choice, its retry, the undo
    assert decided == (1, ["you"])


def test_decide_does_not_close_a_vote_that_other_players_share() -> None:
    async def scenario() -> Game:
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), Recorder(), clock=Clock())
        game = await tables.start("s", "c", "ana", "fantasy", "A knight wakes.")
        await tables.vote(game.place, "ben", 0, "message-1")
        with pytest.raises(GameRuleError, match="other players"):
            await tables.decide(game.place, "ana", 1)
        await tables.close()
        return game

    game = asyncio.run(scenario())
    assert len(game.path) == 1 and game.current.vote_deadline is not None  # still open, ben's vote standing
    assert [(v.player, v.choice) for v in game.current.votes] == [("ben", 0)]


def test_a_player_has_one_star_rating_per_scene_whatever_its_stars() -> None:
    async def scenario() -> Game:
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), Recorder(), clock=Clock())
        game = await tables.start("s", "c", "ana", "fantasy", "A knight wakes.")
        for stars in (4, 2):
            assert await tables.rate(game.place, "ana", "message-1", "star", stars=stars)
        assert await tables.rate(game.place, "ana", "message-1", "up")
        with pytest.raises(GameRuleError, match="1 to 5"):
            await tables.rate(game.place, "ana", "message-1", "star", stars=6)
        await tables.close()
        return game

    game = asyncio.run(scenario())
    assert [(r.stars, r.thumb) for r in game.ratings] == [(2, None), (None, "up")]  # the latest star counts


def test_take_shows_a_saved_game_again_and_leave_lets_it_go() -> None:
    async def scenario() -> tuple[Game, Game, list[int], bool]:
        store, shown = MemoryStore(), Recorder()
        first = Tables(StoryEngine(FakeWriter()), store, Recorder(), clock=Clock(), prefix="terminal", solo=True)
        game = await first.start("local", "a", "you", "fantasy", "A knight wakes.")
        await first.decide(game.place, "you", 0)
        await first.close()
        again = Tables(StoryEngine(FakeWriter()), store, shown, clock=Clock(), prefix="terminal", solo=True)
        taken = await again.take(await store.load(game.id))
        await again.decide(taken.place, "you", 0)  # its vote is open again, for its player
        again.leave(taken.place)
        left = again.game_at(taken.place) is None
        await again.close()
        return taken, await store.load(game.id), shown.shown, left

    taken, saved, shown, left = asyncio.run(scenario())
    assert shown == [2, 3] and len(taken.path) == 3 and left
    assert len(saved.path) == 3  # every step saved before it was shown


def test_a_written_ending_may_be_undone_but_a_game_the_players_ended_may_not() -> None:
    async def scenario() -> tuple[Game, bool]:
        tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), Recorder(), clock=Clock(), prefix="terminal",
                        solo=True)
        game = await tables.start("local", "slot", "you", "fantasy", "A knight wakes.")
        while not game.ended:
            await tables.decide(game.place, "you", 0)
        at_ending = game.current.scene.is_ending
        await tables.undo(game.place, "you", manager=True)  # back to the choice before the ending
        assert not game.ended and game.current.vote_deadline is not None
        await tables.end(game.place, "you", manager=True)
        with pytest.raises(GameRuleError, match="no adventure is running here"):
            await tables.undo(game.place, "you", manager=True)
        await tables.close()
        return game, at_ending

    game, at_ending = asyncio.run(scenario())
    assert at_ending and game.ended


def test_a_rating_does_not_wait_for_a_scene_being_written() -> None:
    # The web's load bench measured ratings taking 10-15 s: they waited on the game lock, held while the next
    # scene was written. A rating changes nothing a close reads; it lands (and is saved) at once.
    async def scenario() -> tuple[bool, Game, Game]:
        store = MemoryStore()
        tables = Tables(StoryEngine(FakeWriter()), store, Recorder(), clock=Clock())
        game = await tables.start("s", "c", "ana", "fantasy", "A knight wakes.")
        async with tables._lock(game):  # a close writing the next scene holds it
            rated = await asyncio.wait_for(tables.rate(game.place, "ben", "message-1", "up"), 1)
            saved = await store.load(game.id)  # saved while the lock is still held
        await tables.close()
        return rated, game, saved

    rated, game, saved = asyncio.run(scenario())
    assert rated and [(r.player, r.thumb) for r in game.ratings] == [("ben", "up")]
    assert [(r.player, r.thumb) for r in saved.ratings] == [("ben", "up")]
