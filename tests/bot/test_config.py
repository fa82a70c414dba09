"""``/config``: per-server settings with defaults, for Manage Server only, stored in the real database."""

from __future__ import annotations

import pytest
import simcord

from bot.client import CyoaBot
from data.store import SQLiteGameStore
from engine.servers import ServerSettings
from tests.bot.conftest import Server

pytestmark = pytest.mark.asyncio


async def test_view_shows_the_defaults(server: Server) -> None:
    result = await server.mod.slash(server.channel, "config view")
    assert result.ephemeral
    fields = {f.name: f.value for f in result.response.embeds[0].fields}
    defaults = ServerSettings()
    assert fields["Vote window"] == f"{defaults.vote_window} s" and fields["Quorum"] == "1 voter(s)"
    assert fields["Channels"] == "every channel"


async def test_members_without_manage_server_cannot_configure(server: Server) -> None:
    with pytest.raises(simcord.SetupError, match="not visible"):  # hidden by default_permissions, as on Discord
        await server.bob.slash(server.channel, "config vote", window=20)
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    config = next(c for c in await bot.tree.fetch_commands() if c.name == "config")
    server.guild.set_command_permissions(config, {server.bob: True})  # a server may show it to anyone...
    result = await server.bob.slash(server.channel, "config vote", window=20)
    server.refused(result, "only members with Manage Server")  # ...but the bot still checks


async def test_settings_are_validated_and_stored(server: Server, store: SQLiteGameStore) -> None:
    result = await server.mod.slash(server.channel, "config vote", window=5)
    server.refused(result, "vote_window")
    result = await server.mod.slash(server.channel, "config vote", window=90, quorum=3)
    assert result.response.content == "Saved."
    assert await store.server_settings(str(server.guild.id)) == {"vote_window": 90, "quorum": 3}
    result = await server.mod.slash(server.channel, "config reset")
    assert await store.server_settings(str(server.guild.id)) == {}


async def test_the_vote_window_applies_to_the_next_vote(server: Server) -> None:
    await server.mod.slash(server.channel, "config vote", window=20)
    await server.alice.slash(server.channel, "adventure start")
    await server.env.advance_time(21)
    assert "Too few votes" in (server.channel.last_message.content or "")  # the 20 s window is over


async def test_allowed_channels(server: Server) -> None:
    other = server.guild.create_text_channel("general")
    result = await server.mod.slash(server.channel, "config channel", action="allow", channel=server.channel)
    assert f"<#{server.channel.id}>" in next(f.value for f in result.response.embeds[0].fields if f.name == "Channels")
    result = await server.alice.slash(other, "adventure start")
    server.refused(result, "not played here; /config view lists where they are")
    result = await server.alice.slash(server.channel, "adventure start")
    assert "started a" in result.response.content
    await server.mod.slash(server.channel, "config channel", action="allow-all")
    result = await server.bob.slash(other, "adventure start")
    assert "started a" in result.response.content


async def test_maximum_games_per_server(server: Server) -> None:
    await server.mod.slash(server.channel, "config games", most=1)
    other = server.guild.create_text_channel("general")
    await server.alice.slash(server.channel, "adventure start")
    result = await server.bob.slash(other, "adventure start")
    server.refused(result, "already has 1 adventures running")


async def test_block_list_additions_apply_to_premises_and_feedback(server: Server) -> None:
    await server.mod.slash(server.channel, "config blockword", action="add", word="Dragons")
    result = await server.alice.slash(server.channel, "adventure start", premise="Dragons attack the school.")
    server.refused(result, "blocked word (dragons)")
    await server.alice.slash(server.channel, "adventure start", premise="A quiet school festival.")
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    [game] = bot.tables.games.values()
    assert game.block_words == ["dragons"]
    result = await server.bob.slash(server.channel, "feedback", text="more dragons please")
    server.refused(result, "blocked word")
    result = await server.mod.slash(server.channel, "config blockword", action="remove", word="unicorns")
    server.refused(result, "not on this server's block list")


async def test_settings_are_per_server(server: Server, store: SQLiteGameStore) -> None:
    await server.mod.slash(server.channel, "config games", most=7)
    other = server.env.create_guild("Other")
    channel = other.create_text_channel("play")
    owner = other.add_member(server.env.create_user("dana"))
    result = await owner.slash(channel, "adventure start")
    assert "started a" in result.response.content
    assert await store.server_settings(str(other.id)) == {}
    assert (await store.server_settings(str(server.guild.id)))["max_games"] == 7


async def test_cooldowns_refuse_a_flood_of_starts_and_retries_privately(server: Server) -> None:
    result = await server.mod.slash(server.channel, "config cooldowns", start=60, steer=20)
    assert "start 60 s per player · retry/undo 20 s per channel" in next(
        f.value for f in result.response.embeds[0].fields if f.name == "Cooldowns")
    result = await server.mod.slash(server.channel, "config cooldowns", steer=1)
    server.refused(result, "steer_cooldown")  # below the floor: a server cannot switch its cooldowns off
    assert "started a" in (await server.alice.slash(server.channel, "adventure start")).response.content
    assert "asked for scene 1 again" in (await server.alice.slash(server.channel, "adventure retry")).response.content
    server.refused(await server.alice.slash(server.channel, "adventure retry"), "again in 20 s")
    server.refused(await server.alice.slash(server.channel, "adventure undo"), "no earlier scene")
    await server.env.advance_time(21)
    assert "asked for scene 1 again" in (await server.alice.slash(server.channel, "adventure retry")).response.content
    other = server.guild.create_text_channel("general")
    server.refused(await server.alice.slash(other, "adventure start"), "start an adventure again in")
    assert "started a" in (await server.bob.slash(other, "adventure start")).response.content  # per player
