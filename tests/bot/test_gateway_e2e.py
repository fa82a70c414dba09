"""End to end over real sockets: the real discord.py client logs in to a fake Discord (``fake_discord``), syncs
its slash commands, answers ``/adventure start``, posts the opening scene with its number reactions, takes a
player's vote from a gateway reaction and posts the scene that follows the chosen choice.

Nothing of the bot or of discord.py is patched: only where discord.py connects (its API base and gateway URL),
and its ``guild_ready_timeout`` client option is shortened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl

from bot.client import INTENTS, CyoaBot
from bot.launcher import build_bot
from bot.render import NUMBERS
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.game import Game
from engine.queue import BatchingWriter
from engine.turns import Premise
from tests.bot.fake_discord import APP_ID, BOT_ID, CHANNEL_ID, GUILD_ID, PLAYER_ID, FakeDiscord, Recorded

TOKEN = "fake-token"
PREMISES = [Premise("fantasy", "A lost knight wakes in a glass forest.")]
VOTE_WINDOW = 10  # seconds: the shortest a server may set
MESSAGES = f"/channels/{CHANNEL_ID}/messages"
PLACE = f"discord:{GUILD_ID}:{CHANNEL_ID}"


def test_slash_command_vote_and_next_scene_over_a_real_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    asyncio.run(play(tmp_path / "cyoa.db", monkeypatch))
    # A failure inside the bot (a cog, a background task, discord.py's event loop) is logged, not raised.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def play(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with asyncio.timeout(60):  # each wait has its own shorter limit; this one stops a hang anywhere else
        await scenario(db, monkeypatch)
    # Closing the bot stopped everything it started: discord.py's tasks, the vote timers, the writer queue.
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def scenario(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord(TOKEN) as server, SQLiteGameStore(db) as store:
        monkeypatch.setattr(discord.http.Route, "BASE", server.api_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
        bot = build_bot(FakeWriter(), store, PREMISES)
        # The opening scene's vote can only close at its deadline (nobody voted on a previous scene, so no
        # "everyone voted" early close): the shortest window the server settings allow keeps the wait short.
        await bot.tables.configure(str(GUILD_ID), vote_window=VOTE_WINDOW)
        # discord.py's guild_ready_timeout option: READY waits this long for more guilds (2 s by default).
        bot._connection.guild_ready_timeout = 0.1
        async with running(bot) as task:
            await connected(server, bot, task)
            first = await start_adventure(server)
            second = await vote_and_wait(server, first, choice=1, timeout=VOTE_WINDOW + 5)
            assert second["embeds"][0]["title"].endswith("scene 2 of at most 12")
            taken = choices(first)[1]
            assert f"You {taken[:1].lower()}{taken[1:]}." in second["embeds"][0]["description"]

            # Scene 2: the player voted on scene 1, so their vote alone closes this one early, without the window.
            started = time.monotonic()
            third = await vote_and_wait(server, second, choice=0, timeout=VOTE_WINDOW / 2)
            assert time.monotonic() - started < VOTE_WINDOW / 2
            assert third["embeds"][0]["title"].endswith("scene 3 of at most 12")
            await server.wait_for(lambda: len(own_reactions(server)) == 9, "the scene 3 reactions")
            # Closing while the vote that brought scene 3 is still being saved would leave its new timer behind
            # (Tables.close stops only what was scheduled before it): wait until the bot is idle, its 3 branches
            # of scene 3 written in advance.
            await eventually(lambda: branches(bot) == 3, "scene 3's branches")

        game = await only_game(store)
        assert [(s.chosen, [(v.player, v.choice) for v in s.votes]) for s in game.path[:2]] == [
            (1, [(str(PLAYER_ID), 1)]), (0, [(str(PLAYER_ID), 0)])]
        assert game.players == [str(PLAYER_ID)]  # the bot's own (echoed) reactions were no votes
        assert [shown.message for shown in game.path] == [m["id"] for m in (first, second, third)]
        echoed = [d for event, d in server.dispatched
                  if event == "MESSAGE_REACTION_ADD" and d["user_id"] == str(BOT_ID)]
        assert len(echoed) == 9  # the bot was sent its own reactions, as Discord does, and ignored them
        assert server.unknown == [] and server.problems == []
        assert all(r.status < 300 for r in server.requests), [(r.path, r.response) for r in server.requests]
        assert len(server.gateway_queries) == 1  # one connection: no reconnect, no resume


@contextlib.asynccontextmanager
async def running(bot: CyoaBot) -> AsyncIterator[asyncio.Task[None]]:
    """The bot connected in the background; closed (with its writer queue) however the block ends."""
    task = asyncio.create_task(bot.start(TOKEN))
    try:
        yield task
    finally:
        await bot.close()
        await asyncio.wait_for(task, timeout=5)
        queue = bot.tables.engine.writer
        if isinstance(queue, BatchingWriter):
            await queue.close()


async def connected(server: FakeDiscord, bot: CyoaBot, task: asyncio.Task[None]) -> None:
    """Login, command sync, gateway IDENTIFY and READY, as Discord sees them."""
    ready = asyncio.ensure_future(bot.wait_until_ready())
    done, _ = await asyncio.wait({ready, task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()  # raises why the client stopped
        raise AssertionError(f"the bot never got ready; requests: {server.summary()}")
    assert [(r.method, r.path) for r in server.requests[:3]] == [
        ("GET", "/users/@me"), ("GET", "/oauth2/applications/@me"), ("PUT", f"/applications/{APP_ID}/commands")]
    assert {c["name"] for c in server.commands} == {"adventure", "feedback", "config", "privacy"}
    privacy = next(c for c in server.commands if c["name"] == "privacy")  # in servers, the bot's DMs, other DMs
    assert privacy["contexts"] == [0, 1, 2] and privacy["integration_types"] == [0, 1]
    assert {r.authorization for r in server.requests} == {f"Bot {TOKEN}"}  # later: a wrong one is a 401, see the end
    assert server.gateway_queries[0]["v"] == "10" and server.gateway_queries[0]["encoding"] == "json"
    assert server.identify is not None and server.identify["intents"] == INTENTS.value  # nothing privileged
    assert bot.get_channel(CHANNEL_ID) is not None  # GUILD_CREATE filled the cache


async def start_adventure(server: FakeDiscord) -> dict[str, Any]:
    """``/adventure start genre:fantasy``: deferred, the scene posted with 1️⃣ 2️⃣ 3️⃣ under it, then the followup."""
    interaction = server.slash_command("adventure", "start", {"genre": "fantasy"})
    assert await server.dispatch("INTERACTION_CREATE", interaction)
    token = interaction["token"]
    followup = f"/webhooks/{APP_ID}/{token}"
    await server.wait_for(lambda: bool(server.find("POST", followup)) and len(own_reactions(server)) == 3,
                          "the followup and the scene's reactions")
    callback = server.find("POST", f"/interactions/{interaction['id']}/{token}/callback")
    assert [r.body["type"] for r in callback] == [5]  # deferred: writing the scene may take a while
    scene = server.find("POST", MESSAGES)
    assert len(scene) == 1  # one message: the opening streamed into it as it was written, then the scene
    answer = server.find("POST", followup)[0]
    assert index_of(server, callback[0]) < index_of(server, scene[0]) < index_of(server, answer)
    assert "A lost knight wakes in a glass forest." in answer.body["content"]
    assert posted(scene[0])["embeds"][0]["title"] == "The storyteller is writing…"
    message = server.messages[int(posted(scene[0])["id"])]  # as it stands after its edits
    edits = server.find("PATCH", MESSAGES + "/" + message["id"])
    assert edits and index_of(server, edits[-1]) < index_of(server, answer)
    assert message["embeds"][0]["title"].endswith("scene 1 of at most 12")
    assert len(choices(message)) == 3
    assert own_reactions(server) == [(message["id"], emoji) for emoji in NUMBERS[:3]]
    return message


async def vote_and_wait(server: FakeDiscord, scene: dict[str, Any], choice: int, timeout: float) -> dict[str, Any]:
    """The player reacts with the number of ``choice`` on ``scene``; returns the next scene the bot posts."""
    before = len(server.find("POST", MESSAGES))
    vote = server.reaction_add(PLAYER_ID, int(scene["id"]), NUMBERS[choice])
    assert await server.dispatch("MESSAGE_REACTION_ADD", vote)
    await server.wait_for(lambda: len(server.find("POST", MESSAGES)) > before, "the next scene", timeout)
    posts = server.find("POST", MESSAGES)
    assert len(posts) == before + 1, [p.body for p in posts]  # no "vote extended" or "could not write" notice
    return posted(posts[-1])


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds, for state the bot keeps (the fake server's own ``wait_for`` sees only its)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def branches(bot: CyoaBot) -> int:
    """How many next scenes the bot has written in advance for the channel game's current scene."""
    game = bot.tables.game_at(PLACE)
    return len(game.current.branches) if game is not None else 0


def choices(message: dict[str, Any]) -> list[str]:
    """The choices a scene embed lists, one "<number> <choice>" line each, in order."""
    field = next(f for f in message["embeds"][0]["fields"] if f["name"] == "What do you do?")
    lines = field["value"].splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == list(NUMBERS[:len(lines)])
    return [line.split(" ", 1)[1] for line in lines]


def own_reactions(server: FakeDiscord) -> list[tuple[str, str]]:
    """(message id, emoji) of every reaction the bot put, in order."""
    puts = server.find("PUT", MESSAGES + r"/\d+/reactions/[^/]+/@me")
    return [(r.path.split("/")[4], r.path.split("/")[6]) for r in puts]


def posted(request: Recorded) -> dict[str, Any]:
    """The message the fake server created for a ``POST`` of a message."""
    assert request.status == 200 and isinstance(request.response, dict), request
    return request.response


def index_of(server: FakeDiscord, request: Recorded) -> int:
    return next(i for i, r in enumerate(server.requests) if r is request)


async def only_game(store: SQLiteGameStore) -> Game:
    games = await store.all_games()
    assert len(games) == 1
    return games[0]
