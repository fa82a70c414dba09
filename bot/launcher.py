"""``cyoa bot``: the one place that builds the bot's parts (the game store, the storyteller behind a batching
queue, the engine) and injects them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import discord

from bot.client import CyoaBot
from engine.checks import CheckRules
from engine.errors import ConfigError
from engine.ports import SceneWriter, TableStore
from engine.queue import BatchingWriter
from engine.turns import EngineRules, Premise, StoryEngine

log = logging.getLogger(__name__)

NO_TOKEN = (
    "no Discord token: set DISCORD_TOKEN in the environment or in .env. To get one: open "
    "https://discord.com/developers/applications, create an application, open Bot, press Reset Token and "
    "copy it. Invite the bot with the scopes bot and applications.commands (the README lists the "
    "permissions)."
)


def build_bot(writer: SceneWriter, store: TableStore, premises: Sequence[Premise],
              block_list: frozenset[str] = frozenset(), sync_commands: bool = True,
              gather_seconds: float = 0.01) -> CyoaBot:
    """The bot over a writer and a store: the writer goes behind one batching queue that every game shares
    (``gather_seconds``: how long the queue waits for other games' requests before a model call)."""
    engine = StoryEngine(BatchingWriter(writer, gather_seconds=gather_seconds),
                         EngineRules(checks=CheckRules(block_list=block_list)), premises=premises)
    return CyoaBot(engine, store, sync_commands=sync_commands)


async def run_bot(token: str, bot: CyoaBot) -> None:
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as exc:
        raise ConfigError("Discord refused the token (DISCORD_TOKEN): reset it in the developer portal and "
                          "put the new one in .env") from exc
    except discord.PrivilegedIntentsRequired as exc:  # we ask for none; a portal setting cannot need one
        raise ConfigError(f"Discord refused the intents: {exc}") from exc


async def serve(token: str, writer: SceneWriter, store: TableStore, premises: Sequence[Premise],
                block_list: frozenset[str]) -> None:
    bot = build_bot(writer, store, premises, block_list)
    try:
        await run_bot(token, bot)
    finally:
        queue = bot.tables.engine.writer
        if isinstance(queue, BatchingWriter):
            await queue.close()


def main() -> None:
    """Run the bot until it is stopped (Ctrl-C); the launcher of the command line calls this."""
    from cyoa.play import bundled_premises
    from cyoa.settings import Settings
    from data.store import SQLiteGameStore
    from models.writer import ModelWriter  # torch and MLflow take seconds to import: only when running

    settings = Settings()
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        raise ConfigError(NO_TOKEN)
    token = settings.discord_token.get_secret_value().strip()

    async def session() -> None:
        async with SQLiteGameStore(settings.home / "cyoa.db") as store:
            writer = await ModelWriter.load(settings.tracking, settings.model_uri("champion"))
            log.info("storyteller %s loaded", writer.model_version)
            premises = await asyncio.to_thread(bundled_premises)
            await serve(token, writer, store, premises, settings.blocked_words)

    asyncio.run(session())
