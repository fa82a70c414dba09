"""``cyoa bot``: the one place that builds the bot's parts (the game store, the storyteller behind a batching
queue, the engine) and injects them."""

from __future__ import annotations

import asyncio
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


def running_versions(bot: CyoaBot) -> set[str]:
    """The model versions of the games in progress: the watcher keeps them loaded and unloads the others (one
    a game needs again is loaded on demand)."""
    return {game.model_version for game in bot.tables.games.values() if not game.ended}


async def close_writers(writers: Writers) -> None:
    for writer in writers.all():
        if isinstance(writer, BatchingWriter):
            await writer.close()


def main() -> None:
    """Run the bot until it is stopped (Ctrl-C); the launcher of the command line calls this."""
    from cyoa.play import bundled_premises
    from cyoa.settings import Settings
    from data.store import SQLiteGameStore
    from models.pretrained import set_cache_dir
    from models.reload import ChampionWatcher
    from models.writer import ModelWriter  # torch and MLflow take seconds to import: only when running

    settings = Settings()
    set_cache_dir(settings.bases)
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        raise ConfigError(NO_TOKEN)
    token = settings.discord_token.get_secret_value().strip()

    decoding = settings.decoding()

    def wrap(writer: SceneWriter) -> SceneWriter:
        return BatchingWriter(writer, max_batch=settings.decoder_slots, deadline_seconds=settings.write_deadline)

    async def load(version: str) -> SceneWriter:
        return wrap(await ModelWriter.load(settings.tracking, f"models:/{version}", decoding))

    async def session() -> None:
        async with SQLiteGameStore(settings.games_db) as store:
            champion = wrap(await ModelWriter.load(settings.tracking, settings.model_uri("champion"), decoding))
            writers = Writers(champion, loader=load, challenger_share=settings.challenger_share)
            watcher = ChampionWatcher(writers, settings.tracking, settings.model_name, settings.reload_seconds,
                                      wrap=wrap, decoding=decoding)
            await watcher.check()  # the challenger, if games are to be shared with it
            log.info("storyteller %s in service (challenger: %s, %.0f%% of new games)", writers.champion,
                     writers.challenger or "none", 100 * settings.challenger_share)
            premises = await asyncio.to_thread(bundled_premises)
            bot = build_bot(writers, store, premises, settings.blocked_words, watcher=watcher)
            watcher.in_use = lambda: running_versions(bot)
            try:
                await run_bot(token, bot)
            finally:
                await close_writers(writers)

    asyncio.run(session())

