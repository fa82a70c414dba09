"""The bot's assembly: the bot over given parts (a writer or writers, a store, premises) and its run. The
parts are built from the settings by the wiring root, ``cyoa.wiring``, which ``cyoa bot`` runs; this package
imports nothing of ``cyoa``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from bot.client import CyoaBot, Watcher
from engine.checks import CheckRules
from engine.errors import ConfigError
from engine.ports import SceneWriter, TableStore
from engine.queue import BatchingWriter
from engine.turns import EngineRules, Premise, StoryEngine
from engine.writers import Writers

log = logging.getLogger(__name__)

NO_TOKEN = (
    "no Discord token: set DISCORD_TOKEN in the environment or in .env. To get one: open "
    "https://discord.com/developers/applications, create an application, open Bot, press Reset Token and "
    "copy it. Invite the bot with the scopes bot and applications.commands (the README lists the "
    "permissions)."
)


def build_bot(writer: SceneWriter | Writers, store: TableStore, premises: Sequence[Premise],
              block_list: frozenset[str] = frozenset(), sync_commands: bool = True,
              gather_seconds: float = 0.01, watcher: Watcher | None = None) -> CyoaBot:
    """The bot over a writer (or writers by model version, each already behind its queue) and a store. A
    single writer goes behind one batching queue that every game shares (``gather_seconds``: how long the
    queue waits for other games' requests before a model call)."""
    writers = writer if isinstance(writer, Writers) else BatchingWriter(writer, gather_seconds=gather_seconds)
    engine = StoryEngine(writers, EngineRules(checks=CheckRules(block_list=block_list)), premises=premises)
    return CyoaBot(engine, store, sync_commands=sync_commands, watcher=watcher)


async def run_bot(token: str, bot: CyoaBot) -> None:
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as exc:
        raise ConfigError("Discord refused the token (DISCORD_TOKEN): reset it in the developer portal and "
                          "put the new one in .env") from exc
    except discord.PrivilegedIntentsRequired as exc:  # we ask for none; a portal setting cannot need one
        raise ConfigError(f"Discord refused the intents: {exc}") from exc
