"""Fixtures for the bot's simcord tests: the real bot, a fake writer, a real SQLite store in a tmp folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest
import pytest_asyncio
import simcord

from bot.client import CyoaBot
from bot.launcher import build_bot
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.turns import Premise

PREMISES = [Premise("fantasy", "A lost knight wakes in a glass forest."),
            Premise("mecha", "A pilot wakes in a ruined hangar.", ("The war ended ten years ago.",))]


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteGameStore]:
    async with SQLiteGameStore(tmp_path / "cyoa.db") as opened:
        yield opened


@pytest.fixture
def simcord_bot(writer: FakeWriter, store: SQLiteGameStore) -> CyoaBot:
    # No gathering window: simcord's virtual clock and a 10 ms real-time wait in the queue do not mix.
    return build_bot(writer, store, PREMISES, block_list=frozenset({"forbidden"}), gather_seconds=0)


@dataclass
class Server:
    """A server with an adventure channel, three players and a moderator (Manage Server)."""

    env: simcord.Env
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor
    carol: simcord.MemberActor
    mod: simcord.MemberActor

    def scenes(self, channel: simcord.ChannelHandle | None = None) -> list[discord.Message]:
        """The scene messages the bot posted, oldest first."""
        messages = (channel or self.channel).history()
        return sorted((m for m in messages if m.embeds and " · scene " in (m.embeds[0].title or "")),
                      key=lambda m: m.id)

    def refused(self, result: simcord.InteractionResult, words: str) -> None:
        """The interaction was answered with a private error message containing ``words``."""
        assert result.ephemeral, result
        content = (result.followups[-1] if result.followups else result.response).content
        assert content.startswith("⚠️") and words in content, content
        assert self.env.errors  # the one error handler saw it (reading them acknowledges it for simcord)


@pytest.fixture
def server(simcord_env: simcord.Env) -> Server:
    env = simcord_env
    guild = env.create_guild()
    channel = guild.create_text_channel("adventures")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    members = [guild.add_member(env.create_user(name)) for name in ("alice", "bob", "carol")]
    mod = guild.add_member(env.create_user("mod"), roles=[mods])
    return Server(env, guild, channel, *members, mod)
