"""``/privacy optout|forget`` through the real bot in simcord: from a server channel and from the bot's DMs."""

from __future__ import annotations

import pytest

from bot.cogs.privacy import ENDED
from bot.render import MARKS, NUMBERS
from data.store import SQLiteGameStore
from engine.privacy import players_in
from tests.bot.conftest import Server
from tests.bot.test_commands import bot_of, start

pytestmark = pytest.mark.asyncio
STAR, UP, DOWN = list(MARKS)


async def test_forget_from_a_dm_deletes_the_players_data_after_a_confirmation(
        server: Server, store: SQLiteGameStore) -> None:
    alices = await start(server, genre="fantasy")  # alice's game: bob votes, rates and comments in it
    await server.bob.react(server.scenes()[0], NUMBERS[1])
    await server.bob.react(server.scenes()[0], UP)
    await server.bob.slash(server.channel, "feedback", text="The knight should remember her sister.")
    elsewhere = server.guild.create_text_channel("bobs-corner")
    await server.bob.slash(elsewhere, "adventure start", genre="mecha", premise="A courier of my own words.")
    await server.alice.react(server.scenes(elsewhere)[0], NUMBERS[0])
    bob = str(server.bob.id)
    assert bob in players_in(await store.load(alices.id))

    asked = await server.bob.user.slash("privacy forget")  # in the bot's DMs
    assert asked.ephemeral and "deletes, for good" in asked.response.content
    cancelled = await server.bob.user.click(asked.response, label="Cancel")
    assert cancelled.response is not None and cancelled.response.content == "Nothing was deleted."
    assert cancelled.response.components == []  # no button left to press
    assert bob in players_in(await store.load(alices.id))

    asked = await server.bob.user.slash("privacy forget")
    deleted = await server.bob.user.click(asked.response, label="Delete my data")
    assert deleted.response is not None and deleted.response.ephemeral  # the question becomes the answer
    assert deleted.response.content.startswith("🗑️ Deleted: 1 vote(s), 1 rating(s), 1 comment(s) and 1 adventure(s)")
    assert server.bob.user.dm_channel.history() == []  # nothing public, not even in the DM
    saved = await store.load(alices.id)
    assert bob not in players_in(saved) and saved.current.votes == [] and saved.ratings == []
    assert [g.id for g in await store.all_games()] == [alices.id]  # bob's own adventure is deleted whole
    assert await store.opted_out() == {bob}
    assert any(m.content == ENDED for m in elsewhere.history())  # its channel is told
    tables = bot_of(server).tables
    assert tables.game_at(tables.place(str(server.guild.id), str(elsewhere.id))) is None
    # The game that goes on does not bring bob's data back at its next save.
    await server.carol.react(server.scenes()[0], NUMBERS[0])
    assert bob not in players_in(await store.load(alices.id))


async def test_optout_works_in_dms_and_in_servers_and_is_answered_privately(
        server: Server, store: SQLiteGameStore) -> None:
    result = await server.carol.user.slash("privacy optout")
    assert result.ephemeral and "never be used to train" in result.response.content
    assert await store.opted_out() == {str(server.carol.id)}
    back = await server.carol.slash(server.channel, "privacy optout", back_in=True)
    assert back.ephemeral and await store.opted_out() == frozenset()
    await server.carol.slash(server.channel, "adventure optout")  # the older command records the same
    assert await store.opted_out() == {str(server.carol.id)}
