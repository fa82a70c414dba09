from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from data.store import SQLiteGameStore, StoreError, migrations
from engine.fakes import FakeWriter
from engine.game import Game, Rating, Vote
from engine.turns import StoryEngine


async def played_game() -> Game:
    engine = StoryEngine(FakeWriter())
    game = await engine.start("channel-1", "mecha", "A pilot wakes.", ["ana"])
    await engine.pregenerate(game)
    await engine.choose(game, 1)
    await engine.retry(game)
    game.current.votes.append(Vote(player="ana", choice=2))
    game.ratings.append(Rating(player="ana", scene=1, stars=4, model_version="fake/1"))
    return game


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    async def scenario() -> tuple[Game, Game, list[str]]:
        game = await played_game()
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            await store.save(game)
            await store.save(game)  # saving again replaces, never duplicates
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            loaded = await store.load(game.id)
            unfinished = [g.id for g in await store.unfinished()]
        return game, loaded, unfinished

    game, loaded, unfinished = asyncio.run(scenario())
    assert loaded == game and unfinished == [game.id]
    db = sqlite3.connect(tmp_path / "cyoa.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM scenes WHERE kind = 'shown'").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM scenes WHERE kind = 'rejected'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM branches WHERE position = 0").fetchone()[0] == 3
    assert db.execute("SELECT choice FROM branches WHERE taken = 1").fetchall() == [(1,)]
    assert db.execute("SELECT player, choice FROM votes").fetchall() == [("ana", 2)]
    assert db.execute("SELECT stars FROM ratings").fetchall() == [(4,)]
    assert db.execute("SELECT count(*) FROM choices WHERE position = 0").fetchone()[0] == 3


def test_list_games_and_unknown_game(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            game = await played_game()
            await store.save(game)
            [summary] = await store.list_games("channel-1")
            assert summary.id == game.id and summary.scenes == 2 and summary.status == "waiting"
            assert await store.list_games("elsewhere") == []
            with pytest.raises(StoreError, match="no saved game 'nope'"):
                await store.load("nope")

    asyncio.run(scenario())


def test_migrations_are_applied_once_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cyoa.db"

    async def version() -> int:
        async with SQLiteGameStore(path) as store:
            return await store.schema_version()

    assert asyncio.run(version()) == migrations()[-1][0]
    assert asyncio.run(version()) == migrations()[-1][0]  # reopening applies nothing twice
    sqlite3.connect(path).execute("PRAGMA user_version = 999").connection.commit()
    with pytest.raises(StoreError, match="written by a newer cyoa \\(schema 999"):
        asyncio.run(version())


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_a_failed_save_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> Game:
        game = await played_game()
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            await store.save(game)
            broken = game.model_copy(deep=True)
            broken.status = "lost"  # type: ignore[assignment]  # violates the CHECK constraint
            with pytest.raises(StoreError, match=f"cannot save game {game.id}; nothing of it was changed: CHECK"):
                await store.save(broken)
            return await store.load(game.id)

    assert asyncio.run(scenario()).status == "waiting"


def test_output_counts_add_up_per_model_version(tmp_path: Path) -> None:
    async def scenario() -> dict[str, dict[str, int]]:
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            await store.add_output_counts({"m/1": {"outputs": 3, "parse_failures": 1, "repairs": 0}})
            await store.add_output_counts({"m/1": {"outputs": 2, "repairs": 1}, "m/2": {"outputs": 4}})
            await store.add_output_counts({})
            return await store.output_counts()

    assert asyncio.run(scenario()) == {"m/1": {"outputs": 5, "parse_failures": 1, "repairs": 1},
                                       "m/2": {"outputs": 4}}


def test_concurrent_saves_of_many_games_each_land_whole(tmp_path: Path) -> None:
    """One connection serves every game: saves that overlap must not interleave their transactions (found by
    the bot's load test: a second BEGIN failed and its rollback undid half of another game's save)."""
    async def scenario() -> None:
        games = [await played_game() for _ in range(12)]
        for number, game in enumerate(games):
            game.current.votes = [Vote(player=f"p{i}", choice=i % 3) for i in range(number % 5 + 1)]
        async with SQLiteGameStore(tmp_path / "cyoa.db") as store:
            for _ in range(3):
                await asyncio.gather(*(store.save(game) for game in games),
                                     store.add_output_counts({"fake/1": {"outputs": 1}}),
                                     store.set_opt_out("p1", True), store.save_server_settings("s", {"quorum": 2}))
            for game in games:
                assert (await store.load(game.id)).current.votes == game.current.votes
            assert (await store.output_counts())["fake/1"]["outputs"] == 3

    asyncio.run(scenario())
    db = sqlite3.connect(tmp_path / "cyoa.db")
    rows = dict(db.execute("SELECT game_id, count(*) FROM votes GROUP BY game_id"))
    states = dict(db.execute("SELECT id, json_array_length(state, '$.path[#-1].votes') FROM games"))
    assert rows == states and len(rows) == 12  # the rows and the state a resume reads agree, for every game


def _rows(path: Path, game_id: str) -> dict[str, int]:
    """How many rows of each table the game has, read by a connection of its own."""
    db = sqlite3.connect(path)
    try:
        return {table: db.execute(f"SELECT count(*) FROM {table} WHERE game_id = ?", (game_id,)).fetchone()[0]
                for table in ("scenes", "choices", "branches", "votes", "ratings")}
    finally:
        db.close()


def _with_more(game: Game, ratings: int, comment: str = "") -> Game:
    changed = game.model_copy(deep=True)
    changed.ratings.extend(Rating(player=f"p{n}", scene=0, comment=comment or None, model_version="fake/1")
                           for n in range(ratings))
    return changed


def test_a_briefly_locked_database_makes_a_save_wait_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "cyoa.db"

    async def scenario() -> float:
        game = await played_game()
        async with SQLiteGameStore(path, busy_timeout=5.0) as store:
            await store.save(game)
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")  # another program writes for a moment

            def finish() -> None:
                other.execute("COMMIT")
                other.close()

            release = threading.Timer(0.3, finish)
            release.start()
            started = time.monotonic()
            await store.save(_with_more(game, 1))
            waited = time.monotonic() - started
            release.join()
            assert len((await store.load(game.id)).ratings) == len(game.ratings) + 1
            return waited

    assert asyncio.run(scenario()) >= 0.25


def test_a_database_locked_past_the_busy_timeout_is_a_store_error_without_its_path(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cyoa.db"

    async def scenario() -> tuple[Game, Game, StoreError]:
        game = await played_game()
        async with SQLiteGameStore(path, busy_timeout=0.2) as store:
            await store.save(game)
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another program holds the write lock for longer than we wait
            try:
                with pytest.raises(StoreError) as caught:
                    await store.save(_with_more(game, 3))
                with pytest.raises(StoreError, match="busy"):
                    await store.set_opt_out("ana", True)
            finally:
                other.execute("ROLLBACK")
                other.close()
            await store.set_opt_out("ana", True)  # the store goes on once the lock is gone
            return game, await store.load(game.id), caught.value

    game, loaded, error = asyncio.run(scenario())
    message = str(error)
    assert message.startswith(f"cannot save game {game.id}; nothing of it was changed: the game database is busy")
    assert str(tmp_path) not in message and "cyoa.db" not in message
    assert str(path) in caplog.text  # the operator's log has the path
    assert loaded.ratings == game.ratings and _rows(path, game.id)["ratings"] == len(game.ratings)


def test_a_full_database_is_a_store_error_without_its_path_and_the_saved_game_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "cyoa.db"

    async def scenario() -> tuple[Game, Game, StoreError, bool]:
        game = await played_game()
        async with SQLiteGameStore(path) as store:
            await store.save(game)
            saved_rows = _rows(path, game.id)
            async with store.db.execute("PRAGMA page_count") as cursor:
                row = await cursor.fetchone()
            assert row is not None
            # The file may not grow by a page: what the disk running out of space looks like to SQLite.
            await (await store.db.execute(f"PRAGMA max_page_count = {int(row[0])}")).close()
            with pytest.raises(StoreError) as caught:
                await store.save(_with_more(game, 400, comment="a long comment " * 40))
            loaded = await store.load(game.id)
            rows_kept = _rows(path, game.id) == saved_rows
            await (await store.db.execute("PRAGMA max_page_count = 1073741823")).close()
            await store.save(_with_more(game, 2))  # with room again, saving works
            return game, loaded, caught.value, rows_kept

    game, loaded, error, rows_kept = asyncio.run(scenario())
    message = str(error)
    assert message.startswith(f"cannot save game {game.id}; nothing of it was changed: the game database is full")
    assert str(tmp_path) not in message
    assert loaded.ratings == game.ratings and loaded.path == game.path and rows_kept
