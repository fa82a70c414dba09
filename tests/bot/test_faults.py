"""Fault injection: the real bot (simcord, virtual time) over a real SQLite file, with faults put into each of its
parts in turn: the storyteller raises, hangs past its deadline, answers garbage, or poisons its batch; Discord
answers 403, 404 or 5xx to a post or an edit; the database is full or locked; the process is killed in the
middle of a save. Each test plays two games (channels ``a`` and ``b``) and asserts, after the fault:

- no game is frozen (``Tables.frozen()`` is empty: every running game has a vote timer, a scene being
  written, or a scene waiting to be shown again), and each game either goes on or has told its channel;
- no stored vote or rating is lost (the database holds what the players did);
- the other game is unaffected (it reaches its next scene as it would have without the fault).

The count of faults each test injects is asserted (``FAULTS`` totals them for the README).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest

from bot.client import CyoaBot
from bot.launcher import build_bot
from bot.render import NUMBERS
from data.store import SQLiteGameStore
from engine import tables as tables_module
from engine.errors import StorytellerFailedError
from engine.fakes import FakeWriter, RecordingPresenter
from engine.game import Game
from engine.ports import WriteRequest, WrittenScene
from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.turns import REPAIR_MARK, StoryEngine
from engine.writers import Writers
from tests.bot.conftest import PREMISES, Server
from tests.engine.test_tables import Clock

pytestmark = pytest.mark.asyncio

DEADLINE = 30.0  # the storyteller's deadline per call in these tests (virtual seconds)
WINDOW = 60  # the default vote window


class FaultyWriter(FakeWriter):
    """The fake storyteller, with a fault switched on for the requests ``hit`` picks: ``raise``, ``hang``
    (never answers) or ``garbage`` (an answer that is no scene)."""

    def __init__(self) -> None:
        super().__init__()
        self.fault: str | None = None
        self.hit: Callable[[WriteRequest], bool] = lambda request: True
        self.injected = 0

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        hit = self.fault is not None and any(self.hit(request) for request in requests)
        if hit and self.fault == "raise":
            self.injected += 1
            raise RuntimeError("CUDA out of memory (injected)")
        if hit and self.fault == "hang":
            self.injected += 1
            await asyncio.sleep(24 * 3600)  # a generation that never comes back
        answers = await super().write(requests)
        if hit and self.fault == "garbage":
            self.injected += 1
            return [WrittenScene("zzkx \x00 <|scene|><|scene|>", a.model_version) if self.hit(r) else a
                    for r, a in zip(requests, answers, strict=True)]
        return answers


@pytest.fixture
def writer() -> FaultyWriter:
    return FaultyWriter()


@pytest.fixture
def simcord_bot(writer: FaultyWriter, store: SQLiteGameStore) -> CyoaBot:
    queue = BatchingWriter(writer, gather_seconds=0, deadline_seconds=DEADLINE)
    return build_bot(Writers(queue), store, PREMISES, gather_seconds=0)


@dataclass
class Table:
    """One game in its own channel, as the players see it and as it is stored."""

    server: Server
    channel: discord.TextChannel | object
    game: Game

    def scenes(self) -> list[discord.Message]:
        return self.server.scenes(self.channel)  # type: ignore[arg-type]

    def said(self) -> list[str]:
        """The bot's plain messages in the channel (notices), oldest first."""
        return [m.content for m in sorted(self.channel.history(), key=lambda m: m.id)  # type: ignore[attr-defined]
                if m.content and not m.embeds]


def bot_of(server: Server) -> CyoaBot:
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    return bot


async def two_games(server: Server) -> tuple[Table, Table]:
    """Games in channels ``a`` (started by alice) and ``b`` (started by bob), each with its first scene."""
    tables = []
    for name, player in (("a", server.alice), ("b", server.bob)):
        channel = server.guild.create_text_channel(name)
        result = await player.slash(channel, "adventure start", genre="fantasy",
                                    premise=f"A lantern maker in town {name} finds a door.")
        assert "started a Fantasy adventure" in result.response.content, result
        [game] = [g for g in bot_of(server).tables.games.values() if g.place.endswith(str(channel.id))]
        tables.append(Table(server, channel, game))
    return tables[0], tables[1]


def in_game(table: Table) -> Callable[[WriteRequest], bool]:
    premise = table.game.premise
    return lambda request: request.context.premise == premise


async def vote_both(server: Server, a: Table, b: Table, choice: int = 1) -> None:
    for table in (a, b):
        [*_, scene] = table.scenes()
        await server.carol.react(scene, NUMBERS[choice])


async def stored_votes(store: SQLiteGameStore, table: Table, scene: int = 0) -> list[tuple[str, int]]:
    return sorted((v.player, v.choice) for v in (await store.load(table.game.id)).path[scene].votes)


def assert_nothing_frozen(server: Server) -> None:
    assert bot_of(server).tables.frozen() == []


async def test_the_storyteller_raising_at_a_vote_close_reopens_that_vote_only(
        server: Server, store: SQLiteGameStore, writer: FaultyWriter) -> None:
    a, b = await two_games(server)
    await asyncio.sleep(0)
    writer.fault, writer.hit = "raise", in_game(a)
    a.game.current.branches.clear()  # written in advance before the fault: make the close write on demand
    await vote_both(server, a, b)
    await server.env.advance_time(WINDOW + 1)
    assert writer.injected >= 1
    assert len(a.scenes()) == 1 and "could not be written (the storyteller failed" in a.said()[-1]
    assert len(b.scenes()) == 2  # the other game went on
    assert await stored_votes(store, a) == [(str(server.carol.id), 1)]  # the vote stands, reopened
    assert_nothing_frozen(server)
    writer.fault = None
    await server.env.advance_time(WINDOW + 1)
    assert len(a.scenes()) == 2  # and the next close writes it


async def test_a_poisoned_request_fails_alone_and_its_batch_mates_are_written() -> None:
    writer = FaultyWriter()
    writer.fault, writer.hit = "raise", lambda request: request.context.premise == "poison"
    queue = BatchingWriter(writer, gather_seconds=0.05)
    from engine.prompt_format import StoryContext

    def request(premise: str) -> WriteRequest:
        return WriteRequest(StoryContext("fantasy", premise, (), "", ()))

    results = await asyncio.gather(*(queue.write([request(p)]) for p in ("one", "poison", "two", "three")),
                                   return_exceptions=True)
    await queue.close()
    assert queue.batches == [4] and queue.faults == 2  # the batch, then the poisoned request alone
    assert isinstance(results[1], StorytellerFailedError)
    assert all(isinstance(r, list) and r[0].text for i, r in enumerate(results) if i != 1)


async def hung_tables(tmp_path: Path) -> tuple[Tables, FaultyWriter, SQLiteGameStore]:
    """The engine's tables without Discord (a hang cannot be simulated in virtual time: nothing wakes it but
    real time), with a 0.3 s deadline, over a real SQLite file."""
    writer = FaultyWriter()
    store = SQLiteGameStore(tmp_path / "hung.db")
    await store.open()
    queue = BatchingWriter(writer, gather_seconds=0, deadline_seconds=0.3)
    return Tables(StoryEngine(queue, seed=1), store, RecordingPresenter(), clock=Clock()), writer, store


async def close_now(tables: Tables, game: Game) -> None:
    """Close the game's vote as its timer would."""
    async with tables._lock(game):
        await tables._close(game)


def presenter_of(tables: Tables) -> RecordingPresenter:
    assert isinstance(tables.presenter, RecordingPresenter)
    return tables.presenter


async def hang_game_a(tables: Tables, writer: FaultyWriter) -> tuple[Game, Game]:
    a = await tables.start("s1", "a", "ana", "fantasy", "A lantern maker finds a door.")
    b = await tables.start("s2", "b", "ben", "fantasy", "A ferry pilot hears a bell.")
    await asyncio.sleep(0.05)  # their branches are written in advance
    writer.fault, writer.hit = "hang", lambda request: request.context.premise == a.premise
    a.current.branches.clear()  # so a's close must write on demand, and hangs
    return a, b


async def test_a_hung_storyteller_is_given_up_at_its_deadline(tmp_path: Path) -> None:
    tables, writer, store = await hung_tables(tmp_path)
    presenter = presenter_of(tables)
    a, b = await hang_game_a(tables, writer)
    assert await tables.vote(a.place, "ana", 1, a.current.message or "")
    assert await tables.vote(b.place, "ben", 0, b.current.message or "")
    closing = asyncio.create_task(close_now(tables, a))
    await asyncio.sleep(0.05)
    await close_now(tables, b)  # the other game is not held up by the hung one
    assert len(b.path) == 2 and not closing.done()
    await closing
    assert writer.injected >= 1 and len(a.path) == 1 and a.current.chosen is None
    assert presenter.failures == ["the storyteller took longer than 0 s and was given up"]
    assert [(v.player, v.choice) for v in (await store.load(a.id)).current.votes] == [("ana", 1)]
    assert tables.frozen() == []  # its vote is open again, with its timer
    writer.fault = None
    await close_now(tables, a)  # the next close writes it
    assert len(a.path) == 2
    await tables.close()
    await store.close()


async def test_ending_a_game_does_not_wait_for_a_hung_scene(tmp_path: Path) -> None:
    tables, writer, store = await hung_tables(tmp_path)
    a, b = await hang_game_a(tables, writer)
    assert isinstance(tables.engine.writers.by_version["fake/1"], BatchingWriter)
    tables.engine.writers.by_version["fake/1"].deadline_seconds = 3600  # truly hung: only ending stops it
    assert await tables.vote(a.place, "ana", 1, a.current.message or "")
    closing = asyncio.create_task(close_now(tables, a))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(tables.end(a.place, "ana"), 1.0)  # at once, not after the hang
    assert (await store.load(a.id)).status == "ended" and a.ended
    await closing
    assert presenter_of(tables).failures == []  # ended, not failed: nothing to tell
    assert await tables.vote(b.place, "ben", 0, b.current.message or "")
    await close_now(tables, b)
    assert len(b.path) == 2
    assert tables.frozen() == []
    await tables.close()
    await store.close()


async def test_garbage_from_the_storyteller_becomes_a_marked_placeholder(
        server: Server, store: SQLiteGameStore, writer: FaultyWriter) -> None:
    a, b = await two_games(server)
    await asyncio.sleep(0)
    writer.fault, writer.hit = "garbage", in_game(a)
    a.game.current.branches.clear()
    await vote_both(server, a, b)
    await server.env.advance_time(WINDOW + 1)
    assert writer.injected >= 3  # every attempt, then the repair
    [*_, shown] = a.scenes()
    assert len(a.scenes()) == 2 and REPAIR_MARK in (shown.embeds[0].description or "")
    assert len(b.scenes()) == 2
    assert_nothing_frozen(server)


@pytest.mark.parametrize("status", [500, 503])
async def test_a_discord_5xx_on_posting_a_scene_is_tried_again(server: Server, store: SQLiteGameStore,
                                                               status: int) -> None:
    a, b = await two_games(server)
    await vote_both(server, a, b)
    server.env.inject_error("POST", f"/channels/{a.channel.id}/messages", status=status,  # type: ignore[attr-defined]
                            times=1)
    await server.env.advance_time(WINDOW + 1)
    assert len(a.scenes()) == 1 and len(b.scenes()) == 2
    assert bot_of(server).tables.faults == 1
    assert_nothing_frozen(server)  # waiting to be shown again
    await server.env.advance_time(6)
    assert len(a.scenes()) == 2
    saved = await store.load(a.game.id)
    assert saved.path[0].chosen == 1 and saved.current.message == str(a.scenes()[-1].id)
    assert await stored_votes(store, a) == [(str(server.carol.id), 1)]


@pytest.mark.parametrize(("status", "tries"), [(403, 4), (404, 2)])
async def test_a_channel_that_stays_unreachable_ends_its_game_saved(
        server: Server, store: SQLiteGameStore, status: int, tries: int) -> None:
    a, b = await two_games(server)
    await server.alice.react(a.scenes()[0], "\N{THUMBS UP SIGN}")
    await vote_both(server, a, b)
    server.env.inject_error("POST", f"/channels/{a.channel.id}/messages", status=status,  # type: ignore[attr-defined]
                            times=None)
    await server.env.advance_time(WINDOW + 1 + 5 + 30 + 120 + 1)
    assert bot_of(server).tables.faults == tries
    saved = await store.load(a.game.id)
    assert saved.status == "ended" and saved.path[0].chosen == 1  # what was played is kept
    assert [(r.player, r.thumb) for r in saved.ratings] == [(str(server.alice.id), "up")]
    assert await stored_votes(store, a) == [(str(server.carol.id), 1)]
    assert len(b.scenes()) >= 3  # the other game played on meanwhile (its next vote closed by a draw)
    assert_nothing_frozen(server)
    server.env.backend.faults.clear()
    result = await server.alice.slash(a.channel, "adventure start", genre="fantasy")  # type: ignore[arg-type]
    assert "started a Fantasy adventure" in result.response.content  # the channel is free again


async def test_a_storyteller_failure_after_a_public_defer_is_told_privately(
        server: Server, writer: FaultyWriter) -> None:
    writer.fault = "raise"
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    [reply] = [m for m in result.followups if m.content.startswith("⚠️")]
    assert reply.ephemeral and "the storyteller failed" in reply.content
    assert server.env.errors  # the one error handler saw it
    assert not [m for m in server.channel.history() if "did not work" in m.content]  # the placeholder is gone
    writer.fault = None
    await server.env.advance_time(31)  # the failed start counted against alice's start cooldown
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    assert "started a Fantasy adventure" in result.response.content
    assert_nothing_frozen(server)


async def test_a_failed_edit_of_the_streamed_draft_posts_the_scene_anew(server: Server) -> None:
    server.env.inject_error("PATCH", "/channels/*/messages/*", status=502, times=None)
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    assert "started a Fantasy adventure" in result.response.content
    [scene] = server.scenes()
    assert scene.embeds[0].fields and [str(r.emoji) for r in scene.reactions] == list(NUMBERS[:3])
    assert_nothing_frozen(server)


class SQLiteFault:
    """Makes the store's writes fail as SQLite fails them when the disk is full or another process holds the
    lock past the busy timeout: the same ``sqlite3.OperationalError`` at the same call, while ``on``. (A real
    ``PRAGMA max_page_count`` is no good here: a save first fills the slack in its tables' own pages, so when
    it fails depends on the page layout; the real lock is in ``test_a_locked_database_is_waited_out``.)"""

    def __init__(self, store: SQLiteGameStore, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = True
        self.failed = 0
        original = store.db.execute

        def execute(sql: str, *args: object) -> object:
            if self.on and sql.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE", "REPLACE"}:
                self.failed += 1
                raise sqlite3.OperationalError(message)
            return original(sql, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(store.db, "execute", execute)


@pytest.mark.parametrize("message", ["database or disk is full", "database is locked"])
async def test_a_database_that_refuses_writes_loses_no_vote_and_the_game_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    # Without Discord and in real time: the saves are retried on timers of their own, which simcord's
    # virtual clock would have to run one by one. The waits are shortened; the rule is the same.
    monkeypatch.setattr(tables_module, "SAVE_RETRY_SECONDS", (0.05, 0.1))
    tables, _, store = await hung_tables(tmp_path)
    a = await tables.start("s1", "a", "ana", "fantasy", "A lantern maker finds a door.")
    b = await tables.start("s2", "b", "ben", "fantasy", "A ferry pilot hears a bell.")
    await asyncio.sleep(0.05)
    fault = SQLiteFault(store, message, monkeypatch)
    assert await tables.vote(a.place, "cho", 2, a.current.message or "")
    await tables.feedback(a.place, "ben", "I liked the door.")
    assert fault.failed >= 2 and tables.faults >= 2
    await close_now(tables, a)  # the next scene cannot be saved, so it is not shown yet
    assert presenter_of(tables).shown == [1, 1] and "could not be saved just now" in presenter_of(tables).notices[-1]
    assert tables.frozen() == []
    assert await tables.vote(b.place, "ben", 0, b.current.message or "")
    await close_now(tables, b)
    assert len(b.path) == 2  # the other game is not held up (its saves fail too, and are retried)
    fault.on = False  # the disk has room again / the other process let go
    await asyncio.sleep(0.5)
    assert presenter_of(tables).shown[-1] == 2 and len(a.path) == 2
    saved = await store.load(a.id)
    assert saved.path[0].chosen == 2 and [(v.player, v.choice) for v in saved.path[0].votes] == [("cho", 2)]
    assert [r.player for r in saved.ratings if r.comment] == ["ben"]
    assert saved.current.message is not None and len((await store.load(b.id)).path) == 2
    assert tables.frozen() == []
    await tables.close()
    await store.close()


async def test_a_locked_database_is_waited_out(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock for a moment: the save waits for it (the busy timeout) and
    lands; nothing fails, nothing is lost."""
    tables, _, store = await hung_tables(tmp_path)
    game = await tables.start("s1", "a", "ana", "fantasy", "A lantern maker finds a door.")
    holder = sqlite3.connect(store.path, timeout=0, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, holder.rollback)
    assert await tables.vote(game.place, "ana", 2, game.current.message or "")
    holder.close()
    assert tables.faults == 0
    assert [(v.player, v.choice) for v in (await store.load(game.id)).current.votes] == [("ana", 2)]
    await tables.close()
    await store.close()


KILLER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from data.store import SQLiteGameStore
    from engine.fakes import FakeWriter
    from engine.game import Rating
    from engine.turns import StoryEngine

    async def main() -> None:
        async with SQLiteGameStore(Path(sys.argv[1])) as store:
            game = await StoryEngine(FakeWriter(), seed=1).start("terminal:kill", "fantasy", "A clock keeper.")
            await store.save(game)
            print(game.id, flush=True)
            while True:  # save after save, each one rating bigger, until killed
                game.ratings.append(Rating(player="p", scene=0, comment="x" * 500, model_version="fake/1"))
                await store.save(game)

    asyncio.run(main())
""")


async def test_a_process_killed_in_the_middle_of_saves_leaves_a_whole_game(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", KILLER, str(path)], stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    game_id = process.stdout.readline().decode().strip()
    await asyncio.sleep(1.0)  # hundreds of saves in flight
    process.send_signal(signal.SIGKILL)
    process.wait()
    async with SQLiteGameStore(path) as store:
        game = await store.load(game_id)  # one whole save: the state and its rows agree
        async with store.db.execute("SELECT COUNT(*) FROM ratings WHERE game_id = ?", (game_id,)) as cursor:
            row = await cursor.fetchone()
    assert row is not None and row[0] == len(game.ratings) > 0
    assert len(game.path) == 1 and game.current.scene.narration


# The faults the tests above inject (15 cases): the README reports the total, 25, and 0 games frozen.
FAULTS = {
    "storyteller raises at a vote close": 1, "one poisoned request in a batch": 1,
    "storyteller hangs past its deadline": 1, "ended during a hung scene": 1, "garbage answers (3 attempts)": 3,
    "Discord 500 / 503 on a post": 2, "Discord 403 on every post (4 tries)": 4, "Discord 404 (2 tries)": 2,
    "storyteller fails after a public defer": 1, "Discord 502 on every edit": 1,
    "database full (a vote, a comment, a close)": 3, "database locked past the timeout (the same)": 3,
    "database locked for a moment": 1, "killed mid-save": 1,
}
assert sum(FAULTS.values()) == 25
