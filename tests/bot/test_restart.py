"""A bot that stops mid-vote and starts again: open votes resume from the database, deadlines are
rescheduled, and the votes are reconciled with the reactions still on the scene message."""

from __future__ import annotations

import pytest

from bot.client import CyoaBot
from bot.launcher import build_bot
from bot.render import NUMBERS
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.game import Vote
from tests.bot.conftest import PREMISES, Server

pytestmark = pytest.mark.asyncio


def fresh_bot(store: SQLiteGameStore) -> CyoaBot:
    """A new process's bot: nothing in memory, the same database."""
    return build_bot(FakeWriter(), store, PREMISES, gather_seconds=0)


async def test_an_open_vote_resumes_with_reconciled_votes_and_its_stored_deadline(
        server: Server, store: SQLiteGameStore) -> None:
    await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    [scene] = server.scenes()
    await server.alice.react(scene, NUMBERS[2])
    await server.bob.react(scene, NUMBERS[2])
    await server.env.advance_time(20)
    [game] = await store.unfinished()
    deadline = game.current.vote_deadline
    # While the bot was down: bob's vote event was lost, and carol's stored vote no longer has a reaction.
    game.current.votes = [v for v in game.current.votes if v.player != str(server.bob.id)]
    game.current.votes.append(Vote(player=str(server.carol.id), choice=0))
    await store.save(game)

    await server.env.restart_bot(fresh_bot(store))
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    resumed = bot.tables.running(game.place)
    assert resumed.current.vote_deadline == deadline  # rescheduled from the database, not restarted
    assert sorted((v.player, v.choice) for v in resumed.current.votes) == sorted(
        [(str(server.alice.id), 2), (str(server.bob.id), 2)])
    assert sorted((v.player, v.choice) for v in (await store.load(game.id)).current.votes) == sorted(
        [(str(server.alice.id), 2), (str(server.bob.id), 2)])

    await server.env.advance_time(39)
    assert len(server.scenes()) == 1
    await server.env.advance_time(2)  # the stored deadline passes: one new scene, from the vote's winner
    assert len(server.scenes()) == 2
    saved = await store.load(game.id)
    assert saved.path[0].chosen == 2 and "You wait and watch 1." in saved.current.scene.narration


async def test_a_scene_saved_but_never_posted_is_posted_on_resume(server: Server, store: SQLiteGameStore) -> None:
    await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    [game] = await store.unfinished()
    game.current.message = None  # it stopped between saving the scene and posting it
    await store.save(game)
    await server.env.restart_bot(fresh_bot(store))
    scenes = server.scenes()
    assert len(scenes) == 2 and scenes[-1].embeds[0].description == game.current.scene.narration
    assert (await store.load(game.id)).current.message == str(scenes[-1].id)


async def test_ratings_and_votes_after_a_restart_reach_the_resumed_game(server: Server,
                                                                      store: SQLiteGameStore) -> None:
    await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    [scene] = server.scenes()
    await server.env.restart_bot(fresh_bot(store))
    await server.bob.react(scene, NUMBERS[1])
    await server.bob.react(scene, "\N{THUMBS UP SIGN}")
    [game] = await store.unfinished()
    assert [(v.player, v.choice) for v in game.current.votes] == [(str(server.bob.id), 1)]
    assert [(r.player, r.thumb) for r in game.ratings] == [(str(server.bob.id), "up")]
