"""The game store: a real SQLite file (WAL, foreign keys) through aiosqlite, with numbered migrations.

Migrations are ``data/migrations/NNNN_name.sql``, applied in order at open; the database's
``PRAGMA user_version`` records the last one, and a database from a newer cyoa is refused rather than
guessed at. Every save of a game is one transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from engine.errors import CyoaError, StateError
from engine.game import Game, GameStatus, Shown, now
from engine.privacy import Forgotten, forget_in_game, players_in, started_by

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_Row = tuple[object, ...]
# How long a statement waits for another connection's lock (a backup, `cyoa feedback export`, sqlite3 in a
# terminal) before it fails: a briefly locked database delays a save instead of losing it.
BUSY_TIMEOUT_SECONDS = 5.0

log = logging.getLogger(__name__)

# What a player is told for the SQLite failures a running store can meet (by primary result code). The
# database's path is never in it: it is logged, for the operator.
_BUSY = "the game database is busy (another program holds it locked); try again in a moment"
_REASONS = {
    sqlite3.SQLITE_BUSY: _BUSY,
    sqlite3.SQLITE_LOCKED: _BUSY,
    sqlite3.SQLITE_FULL: "the game database is full (its disk has no space left, or its size limit is reached)",
    sqlite3.SQLITE_IOERR: "the game database could not be read or written (a disk error)",
    sqlite3.SQLITE_READONLY: "the game database is read-only",
    sqlite3.SQLITE_CORRUPT: "the game database is damaged",
    sqlite3.SQLITE_NOTADB: "the game database is damaged",
    sqlite3.SQLITE_CANTOPEN: "the game database cannot be opened",
}


class StoreError(CyoaError):
    """The game database cannot be opened or used."""


def _reason(exc: sqlite3.Error) -> str:
    """Why a statement failed, in words a player can read (SQLite's own message for anything unforeseen:
    a constraint, a bug; it names no file)."""
    code = getattr(exc, "sqlite_errorcode", None)  # set by sqlite3 on errors from the library itself
    reason = _REASONS.get(code & 0xFF) if isinstance(code, int) else None
    return reason or str(exc)


@dataclass(frozen=True)
class GameSummary:
    id: str
    place: str
    genre: str
    premise: str
    status: str
    scenes: int
    model_version: str
    updated_at: str


def migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = re.match(r"(\d+)_", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


class SQLiteGameStore:
    """The real ``engine.ports.GameStore``: ``async with SQLiteGameStore(path) as store:``."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        # One connection serves every game, so its transactions must not interleave: a second BEGIN inside
        # the first fails, and its rollback would undo the other game's half-written save.
        self._writing = asyncio.Lock()

    async def __aenter__(self) -> SQLiteGameStore:
        await self.open()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the game store is not open")
        return self._db

    async def _run(self, sql: str, parameters: Iterable[Any] = ()) -> None:
        # The cursor is closed on aiosqlite's own thread. Left to the garbage collector, it may be freed on the
        # event loop's thread while aiosqlite's thread runs the same cached statement ("bad parameter or other
        # API misuse").
        async with self.db.execute(sql, parameters):
            pass

    async def _run_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        async with self.db.executemany(sql, rows):
            pass

    def _failed(self, what: str, exc: sqlite3.Error, outcome: str = "") -> StoreError:
        """The error a user sees (what failed and why, no path); the whole of it, path included, is logged."""
        log.error("game database %s: cannot %s: %s: %s", self.path, what, type(exc).__name__, exc)
        return StoreError(f"cannot {what}{outcome}: {_reason(exc)}")

    @asynccontextmanager
    async def _reading(self, what: str) -> AsyncIterator[None]:
        """A read whose SQLite errors (locked, damaged, a disk error) become a ``StoreError``."""
        try:
            yield
        except aiosqlite.Error as exc:
            raise self._failed(what, exc) from exc

    async def _rollback(self) -> None:
        try:
            await self.db.rollback()
        except aiosqlite.Error as exc:  # a disk error can fail the rollback too: SQLite's journal undoes it
            log.error("game database %s: the rollback failed (%s); SQLite undoes the transaction from its journal "
                      "when the database is next opened", self.path, exc)

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[None]:
        """One write transaction at a time; on any failure (locked past the busy timeout, full, a disk error)
        it is rolled back and nothing of it stays."""
        async with self._writing:
            try:
                await self._run("BEGIN IMMEDIATE")
                yield
                await self.db.commit()
            except aiosqlite.Error as exc:
                await self._rollback()
                raise self._failed(what, exc, "; nothing of it was changed") from exc
            except BaseException:
                await self._rollback()
                raise

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, timeout=self.busy_timeout)
            await self._run("PRAGMA journal_mode = WAL")
            await self._run("PRAGMA foreign_keys = ON")
            await self._migrate()
        except aiosqlite.Error as exc:
            await self.close()
            raise StoreError(f"{self.path}: cannot open the game database: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        known = migrations()
        newest = known[-1][0] if known else 0
        if current > newest:
            raise StoreError(f"{self.path} was written by a newer cyoa (schema {current}, this one knows up to "
                             f"{newest}): upgrade cyoa, or point CYOA_HOME elsewhere")
        for number, path in known:
            if number > current:
                # executescript commits first; the script and the version bump then run as one transaction.
                await self.db.executescript(f"BEGIN;\n{path.read_text(encoding='utf-8')}\n"
                                            f"PRAGMA user_version = {number};\nCOMMIT;")

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # --- games --------------------------------------------------------------------------------
    async def save(self, game: Game) -> None:
        """Write the whole game in one transaction: its state and its rows, without what a player asked to
        have forgotten (``_without_forgotten``)."""
        stamp = now().isoformat()
        async with self._transaction(f"save game {game.id}"):
            kept = await self._without_forgotten(game)
            if kept is None:
                return  # started by a player forgotten since: deleted then, and never written again
            game = kept
            # The place is updated too: a game can move (an old terminal game gets a place of its own).
            await self._run(
                "INSERT INTO games (id, place, genre, premise, model_version, status, scenes, state_version, state,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " place = excluded.place, status = excluded.status, scenes = excluded.scenes,"
                " state = excluded.state, updated_at = excluded.updated_at",
                (game.id, game.place, game.genre, game.premise, game.model_version, str(game.status), len(game.path),
                 game.state_version, game.to_json(), game.created_at.isoformat(), stamp),
            )
            for table in ("scenes", "choices", "branches", "votes", "ratings"):
                # The table names are the constants above, never input.
                await self._run(f"DELETE FROM {table} WHERE game_id = ?", (game.id,))
            await self._write_rows(game)

    async def _write_rows(self, game: Game) -> None:
        scenes: list[_Row] = []
        choices: list[_Row] = []
        branches: list[_Row] = []
        votes: list[_Row] = []
        shown_lists: list[tuple[str, list[Shown]]] = [("shown", game.path), ("undone", game.undone)]
        for kind, shown_list in shown_lists:
            for position, shown in enumerate(shown_list):
                where = position if kind == "shown" else -1 - position
                written = shown.scene
                scenes.append((game.id, where, written.narration, written.ending, written.model_version,
                               int(written.repaired), shown.chosen, kind, shown.shown_at.isoformat()))
                scenes.extend((game.id, where, old.narration, old.ending, old.model_version, int(old.repaired), None,
                               "rejected", None) for old in shown.rejected)
                if kind == "shown":
                    choices.extend((game.id, where, number, text) for number, text in enumerate(written.choices))
                    branches.extend((game.id, where, choice, b.narration, b.ending, b.model_version,
                                     int(shown.chosen == choice)) for choice, b in shown.branches.items())
                    votes.extend((game.id, where, v.player, v.choice, v.at.isoformat()) for v in shown.votes)
        await self._run_many("INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", scenes)
        await self._run_many("INSERT INTO choices VALUES (?, ?, ?, ?)", choices)
        await self._run_many("INSERT INTO branches VALUES (?, ?, ?, ?, ?, ?, ?)", branches)
        await self._run_many("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?, ?)", votes)
        await self._run_many(
            "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(game.id, r.scene, r.player, r.stars, r.thumb, r.comment, r.model_version, r.at.isoformat())
             for r in game.ratings])

    async def add_output_counts(self, counts: dict[str, dict[str, int]]) -> None:
        """Add the engine's output-check counts (``OutputStats.drain()``) to the stored totals."""
        rows = [(version, counter, n) for version, by_counter in counts.items() for counter, n in by_counter.items()
                if n]
        if not rows:
            return
        async with self._transaction("record output counts"):
            await self._run_many(
                "INSERT INTO output_counts VALUES (?, ?, ?) ON CONFLICT (model_version, counter) DO UPDATE SET"
                " count = count + excluded.count", rows)

    async def output_counts(self) -> dict[str, dict[str, int]]:
        async with (self._reading("read the output counts"),
                    self.db.execute("SELECT model_version, counter, count FROM output_counts") as cursor):
            rows = await cursor.fetchall()
        out: dict[str, dict[str, int]] = {}
        for version, counter, count in rows:
            out.setdefault(str(version), {})[str(counter)] = int(count)
        return out

    async def load(self, game_id: str) -> Game:
        async with (self._reading(f"read game {game_id}"),
                    self.db.execute("SELECT state FROM games WHERE id = ?", (game_id,)) as cursor):
            row = await cursor.fetchone()
        if row is None:
            raise StoreError(f"no saved game {game_id!r}")
        return self._game(game_id, str(row[0]))

    async def unfinished(self) -> list[Game]:
        """Every game that has not ended, oldest first: what a restart resumes."""
        return await self._games("WHERE status != ?", (str(GameStatus.ENDED),))

    async def _games(self, where: str = "", parameters: tuple[str, ...] = ()) -> list[Game]:
        """The saved games that ``where`` selects, oldest first, read in one query."""
        async with (self._reading("read the saved games"),
                    self.db.execute(f"SELECT id, state FROM games {where} ORDER BY created_at, id",
                                    parameters) as cursor):
            rows = await cursor.fetchall()
        return [self._game(str(game_id), str(state)) for game_id, state in rows]

    def _game(self, game_id: str, state: str) -> Game:
        try:
            return Game.from_json(state)
        except (StateError, ValueError) as exc:
            raise StoreError(f"saved game {game_id} cannot be read: {exc}") from exc

    async def list_games(self, place: str | None = None) -> list[GameSummary]:
        query = ("SELECT id, place, genre, premise, status, scenes, model_version, updated_at FROM games"
                 + (" WHERE place = ?" if place is not None else "") + " ORDER BY updated_at DESC")
        async with (self._reading("list the saved games"),
                    self.db.execute(query, (place,) if place is not None else ()) as cursor):
            rows = await cursor.fetchall()
        return [GameSummary(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]), str(r[6]), str(r[7]))
                for r in rows]

    async def all_games(self) -> list[Game]:
        """Every saved game, oldest first (the feedback export and the live report read these)."""
        return await self._games()

    # --- servers and players ------------------------------------------------------------------
    async def server_settings(self, server: str) -> dict[str, Any]:
        """The values a server changed from the defaults (empty if none)."""
        async with (self._reading(f"read the settings of server {server}"),
                    self.db.execute("SELECT settings FROM server_settings WHERE server = ?", (server,)) as cursor):
            row = await cursor.fetchone()
        if row is None:
            return {}
        try:
            values = json.loads(str(row[0]))
        except json.JSONDecodeError as exc:
            log.error("game database %s: settings of server %s are not JSON: %s", self.path, server, exc)
            raise StoreError(f"the stored settings of server {server} are damaged (not JSON)") from exc
        if not isinstance(values, dict):
            log.error("game database %s: settings of server %s are not an object", self.path, server)
            raise StoreError(f"the stored settings of server {server} are damaged (not an object)")
        return values

    async def save_server_settings(self, server: str, values: dict[str, Any]) -> None:
        async with self._transaction(f"save the settings of server {server}"):
            await self._run(
                "INSERT INTO server_settings VALUES (?, ?, ?) ON CONFLICT (server) DO UPDATE SET"
                " settings = excluded.settings, updated_at = excluded.updated_at",
                (server, json.dumps(values, sort_keys=True), now().isoformat()))

    async def set_opt_out(self, player: str, opted_out: bool) -> None:
        """Record (or take back) a player's wish that their votes and ratings never train a model."""
        async with self._transaction("record the opt-out"):
            if opted_out:
                await self._run("INSERT OR IGNORE INTO opt_outs VALUES (?, ?)", (player, now().isoformat()))
            else:
                await self._run("DELETE FROM opt_outs WHERE player = ?", (player,))

    async def opted_out(self) -> frozenset[str]:
        async with self._reading("read the opt-outs"), self.db.execute("SELECT player FROM opt_outs") as cursor:
            return frozenset(str(row[0]) for row in await cursor.fetchall())

    async def set_nickname(self, player: str, nickname: str | None) -> None:
        """Keep the name a player chose for themselves (``None``: take it away)."""
        async with self._transaction("save a nickname"):
            if nickname is None:
                await self._run("DELETE FROM nicknames WHERE player = ?", (player,))
            else:
                await self._run("INSERT INTO nicknames VALUES (?, ?, ?) ON CONFLICT (player) DO UPDATE SET"
                                " nickname = excluded.nickname, at = excluded.at",
                                (player, nickname, now().isoformat()))

    async def nicknames(self, players: Collection[str]) -> dict[str, str]:
        """The nicknames of those of ``players`` who chose one."""
        wanted = sorted(set(players))
        found: dict[str, str] = {}
        async with self._reading("read nicknames"):
            for start in range(0, len(wanted), 500):  # SQLite bounds the parameters of one statement
                part = wanted[start:start + 500]
                marks = ", ".join("?" * len(part))
                async with self.db.execute(f"SELECT player, nickname FROM nicknames WHERE player IN ({marks})",
                                           part) as cursor:
                    found.update((str(player), str(name)) for player, name in await cursor.fetchall())
        return found

    # --- forgetting a player ------------------------------------------------------------------
    async def forget_player(self, player: str) -> Forgotten:
        """Delete what the player did from every saved game, and the games they started (``engine.privacy``),
        in one transaction; record the forget (table ``forgotten``) and opt them out, so that nothing of theirs
        comes back (``_without_forgotten``) and what they do later is not harvested until they opt back in."""
        forgotten = Forgotten()
        stamp = now()
        async with self._transaction("forget a player"):
            async with self.db.execute("SELECT id, state FROM games") as cursor:
                rows = await cursor.fetchall()
            for game_id, state in rows:
                game = self._game(str(game_id), str(state))
                if started_by(game, player):
                    await self._run("DELETE FROM games WHERE id = ?", (game.id,))  # its rows go with it (cascade)
                    forgotten.games += 1
                elif player in players_in(game):
                    forgotten += forget_in_game(game, player)
                    await self._rewrite(game, stamp)
            await self._run("DELETE FROM nicknames WHERE player = ?", (player,))
            await self._run("INSERT OR REPLACE INTO forgotten VALUES (?, ?)", (player, stamp.isoformat()))
            await self._run("INSERT OR IGNORE INTO opt_outs VALUES (?, ?)", (player, stamp.isoformat()))
        log.info("forgot a player: %s", forgotten)
        return forgotten

    async def _rewrite(self, game: Game, stamp: datetime) -> None:
        """A stored game's state and rows written again (inside a transaction)."""
        await self._run("UPDATE games SET state = ?, updated_at = ? WHERE id = ?",
                        (game.to_json(), stamp.isoformat(), game.id))
        for table in ("scenes", "choices", "branches", "votes", "ratings"):  # constants, never input
            await self._run(f"DELETE FROM {table} WHERE game_id = ?", (game.id,))
        await self._write_rows(game)

    async def _without_forgotten(self, game: Game) -> Game | None:
        """``game`` as it may be written (inside the save's transaction): what players forgotten since did up
        to their forget is left out (a copy; the caller's game is not changed), and a game one of them started
        before it is not written at all (``None``). It catches what a forget could not reach: a running bot's
        games when ``cyoa privacy forget`` ran in another process, a reaction read again after a restart."""
        named = sorted(players_in(game))
        if not named:
            return game
        marks = ", ".join("?" * len(named))
        async with self.db.execute(f"SELECT player, at FROM forgotten WHERE player IN ({marks})", named) as cursor:
            rows = await cursor.fetchall()
        if not rows:
            return game
        kept = game.model_copy(deep=True)
        for player, at in rows:
            until = datetime.fromisoformat(str(at))
            if started_by(kept, str(player), until):
                return None
            forget_in_game(kept, str(player), until)
        return kept
