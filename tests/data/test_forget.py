"""``forget_player`` on the real SQLite store: what goes, what stays, and what no later save brings back."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from cyoa.cli import app
from cyoa.settings import Settings
from data.feedback import harvest
from data.store import SQLiteGameStore
from engine.game import Game, now
from engine.privacy import Forgotten, forget_in_game, players_in
from tests.data.games import cheer, new_engine, play, rate

runner = CliRunner()


def season() -> tuple[Game, Game, Game]:
    """ana's game (bo and cy vote, rate, comment), bo's own game (ana votes), and a game bo never touched."""
    async def scenario() -> tuple[Game, Game, Game]:
        engine = new_engine()
        anas = await play(engine, [{"bo": 0, "cy": 0}, {"bo": 1}], players=["ana", "bo", "cy"], owner="ana")
        bos = await play(engine, [{"ana": 1}], players=["bo", "ana"], owner="bo")
        other = await play(engine, [{"cy": 0}], players=["cy"], owner="cy")
        return anas, bos, other

    anas, bos, other = asyncio.run(scenario())
    cheer(anas, [1], ["bo", "cy"])
    rate(anas, "bo", 2, stars=2)
    anas.ratings.append(anas.ratings[0].model_copy(update={"thumb": None, "comment": "the robot should sing"}))
    return anas, bos, other


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_forget_deletes_the_players_data_and_games_and_keeps_everyone_elses(tmp_path: Path) -> None:
    path = tmp_path / "cyoa.db"
    anas, bos, other = season()

    async def scenario() -> tuple[Forgotten, list[Game], frozenset[str]]:
        async with SQLiteGameStore(path) as store:
            for game in (anas, bos, other):
                await store.save(game)
            forgotten = await store.forget_player("bo")
            return forgotten, await store.all_games(), await store.opted_out()

    forgotten, games, opted_out = asyncio.run(scenario())
    assert forgotten == Forgotten(games=1, votes=2, ratings=2, comments=1)
    assert [g.id for g in games] == [anas.id, other.id]  # bo's own game is gone whole
    kept = games[0]
    assert "bo" not in players_in(kept)
    assert [(v.player, v.choice) for v in kept.path[0].votes] == [("cy", 0)] and kept.path[0].forgotten_votes == 1
    assert kept.path[1].votes == [] and kept.path[1].forgotten_votes == 1
    assert [(r.player, r.thumb) for r in kept.ratings] == [("cy", "up")]
    assert games[1] == other and opted_out == {"bo"}
    # The rows agree with the states: nothing of bo's anywhere, bo's game's rows deleted with it.
    assert rows(path, "SELECT DISTINCT player FROM votes") == [("cy",)]
    assert rows(path, "SELECT DISTINCT player FROM ratings") == [("cy",)]
    assert rows(path, f"SELECT count(*) FROM scenes WHERE game_id = '{bos.id}'") == [(0,)]
    assert [player for player, _ in rows(path, "SELECT player, at FROM forgotten")] == ["bo"]


def test_no_later_save_writes_back_what_was_forgotten(tmp_path: Path) -> None:
    """A bot that still holds the games in memory (``cyoa privacy forget`` ran in another process) saves them
    again: what bo did before the forget stays out, bo's game is not written again, and new play counts."""
    path = tmp_path / "cyoa.db"
    anas, bos, other = season()

    async def scenario() -> tuple[list[Game], Game]:
        async with SQLiteGameStore(path) as store:
            for game in (anas, bos, other):
                await store.save(game)
            await store.forget_player("bo")
            await store.save(bos)  # the bot's copy of bo's game
            anas.ratings.append(anas.ratings[-1].model_copy(update={"player": "bo", "at": now() + timedelta(1)}))
            anas.current.votes.append(anas.path[0].votes[0].model_copy(update={"player": "bo"}))
            anas.current.shown_at = now() + timedelta(hours=1)  # a scene shown after the forget: bo's new vote
            await store.save(anas)  # the bot's copy of ana's game, with bo's old and new play
            newer = await play(new_engine(), [{"bo": 0}], players=["bo"], owner="bo")  # a game bo starts later
            await store.save(newer)
            return await store.all_games(), newer

    games, newer = asyncio.run(scenario())
    assert [g.id for g in games] == [anas.id, other.id, newer.id]
    saved = games[0]
    assert [v.player for v in saved.path[0].votes] == ["cy"] and [v.player for v in saved.current.votes] == ["bo"]
    assert [(r.player, r.comment) for r in saved.ratings if r.player == "bo"] == [("bo", "the robot should sing")]
    assert len(saved.ratings) == 2  # cy's thumb, and bo's comment given after the forget
    assert {v.player for v in anas.path[0].votes} == {"bo", "cy"}  # the caller's game is not changed
    assert games[2] == newer


def test_a_choice_that_rested_on_a_forgotten_vote_is_not_learned() -> None:
    anas, _, _ = season()
    cheer(anas, [1, 2], ["ana", "cy"])
    before = harvest([anas], frozenset(), []).counts
    forget_in_game(anas, "bo")
    after = harvest([anas], frozenset(), []).counts  # even once bo is no longer opted out
    # Step 0>1 stands on cy's vote; step 1>2 rested on bo's vote alone, so it goes as opted-out votes do.
    assert (before["steps_kept"], before["steps_dropped_opted_out"]) == (1, 0)
    assert (after["steps_kept"], after["steps_dropped_opted_out"]) == (1, 1)


def test_the_operator_forgets_a_player_from_the_command_line(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["privacy", "forget", "bo"])
    assert missing.exit_code == 1 and "no game database yet" in missing.stderr
    anas, bos, other = season()

    async def save() -> None:
        async with SQLiteGameStore(Settings().games_db) as store:
            for game in (anas, bos, other):
                await store.save(game)

    asyncio.run(save())
    result = runner.invoke(app, ["privacy", "forget", "bo", "--json"])
    assert result.exit_code == 0, result.output
    assert '"games": 1' in result.stdout and '"votes": 2' in result.stdout
    plain = runner.invoke(app, ["privacy", "forget", "bo"])
    assert plain.exit_code == 0 and "0 vote(s)" in plain.stdout and "opted out" in plain.stdout
