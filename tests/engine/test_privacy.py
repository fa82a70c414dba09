"""Forgetting a player: the pure rules on a game, and ``Tables.forget`` on live games (in-memory store)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from engine.fakes import FakeWriter, MemoryStore, RecordingPresenter
from engine.game import Game, Rating
from engine.privacy import Forgotten, forget_in_game, players_in, started_by
from engine.tables import Tables
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote

NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def voted(engine: StoryEngine, game: Game, ballot: dict[str, int], at: datetime = NOW) -> None:
    open_vote(game, VoteRules(window_seconds=30), at)
    for player, choice in ballot.items():
        cast(game, player, choice, at)
    result = close_vote(game, VoteRules(window_seconds=30), at, seed=1)
    assert result.choice is not None
    await engine.choose(game, result.choice)


def rated(game: Game, player: str, scene: int, at: datetime = NOW, **what: object) -> None:
    game.ratings.append(Rating.model_validate({"player": player, "scene": scene, "at": at,
                                              "model_version": "fake/1", **what}))


def played() -> Game:
    """ana's game: bo votes twice (once on a scene later undone), rates and comments; cy votes with bo once."""
    async def scenario() -> Game:
        engine = StoryEngine(FakeWriter())
        game = await engine.start("discord:s:c", "mecha", "A pilot wakes.", ["ana", "bo", "cy"], owner="ana")
        await voted(engine, game, {"bo": 1, "cy": 1})
        await voted(engine, game, {"bo": 0})
        await engine.undo(game)  # the scene bo voted on alone goes back to its vote; bo's vote stays recorded
        return game

    game = asyncio.run(scenario())
    rated(game, "bo", 1, thumb="up")
    rated(game, "bo", 1, comment="more robots")
    rated(game, "cy", 1, stars=4)
    return game


def test_a_forget_removes_the_players_votes_ratings_comments_and_id() -> None:
    game = played()
    assert "bo" in players_in(game) and not started_by(game, "bo") and started_by(game, "ana")
    removed = forget_in_game(game, "bo")

    assert removed == Forgotten(votes=2, ratings=1, comments=1)
    assert "bo" not in players_in(game) and game.players == ["ana", "cy"]
    first = game.path[0]
    # The closed vote keeps cy's vote and says one was deleted: its choice may have rested on it.
    assert [(v.player, v.choice) for v in first.votes] == [("cy", 1)] and first.forgotten_votes == 1
    assert [(r.player, r.stars) for r in game.ratings] == [("cy", 4)]
    assert forget_in_game(game, "bo") == Forgotten() and not Forgotten()


def test_a_forget_up_to_a_moment_leaves_what_came_after() -> None:
    game = played()
    later = NOW + timedelta(hours=1)
    game.path[0].shown_at, game.path[1].shown_at = NOW - timedelta(hours=1), later
    rated(game, "bo", 0, at=later, thumb="down")  # after the forget: theirs to keep
    removed = forget_in_game(game, "bo", until=NOW)
    assert removed == Forgotten(votes=1, ratings=1, comments=1)  # the vote on the scene shown later stays
    assert [v.player for v in game.path[1].votes] == ["bo"] and game.path[0].forgotten_votes == 1
    assert [(r.player, r.thumb) for r in game.ratings if r.player == "bo"] == [("bo", "down")]
    assert "bo" in game.players  # something of theirs is left
    assert not started_by(game, "ana", until=game.created_at - timedelta(seconds=1))  # a game started later


def test_tables_forget_scrubs_live_games_so_no_save_writes_the_data_back() -> None:
    async def scenario() -> tuple[Tables, MemoryStore, Game, Forgotten]:
        store = MemoryStore()
        tables = Tables(StoryEngine(FakeWriter()), store, RecordingPresenter(), clock=lambda: NOW)
        ana = await tables.start("s", "one", "ana", "fantasy", "A knight wakes.")
        await tables.vote(ana.place, "bo", 1, ana.current.message or "")
        await tables.rate(ana.place, "bo", ana.current.message or "", "up")
        bos = await tables.start("s", "two", "bo", "fantasy", "A dragon of my own words.")
        await tables.vote(bos.place, "ana", 0, bos.current.message or "")
        forgotten = await tables.forget("bo")
        await tables.vote(ana.place, "cy", 0, ana.current.message or "")  # the next save of ana's game
        await tables.close()
        return tables, store, ana, forgotten

    tables, store, ana, forgotten = asyncio.run(scenario())
    assert forgotten == Forgotten(games=1, votes=1, ratings=1)
    # In memory: bo's vote and rating are gone from ana's game; bo's own game was ended and dropped.
    assert [v.player for v in ana.current.votes] == ["cy"] and ana.ratings == []
    assert list(tables.games) == [ana.place]
    # In the store, after a later save: the same, bo opted out, and bo's game deleted whole.
    [saved] = asyncio.run(store.all_games())
    assert saved.id == ana.id and "bo" not in players_in(saved)
    assert asyncio.run(store.opted_out()) == {"bo"}
