"""The one wiring root: what every frontend runs on (the storytellers behind their queues, the engine), built
from ``Settings``, and the bot's launch. The frontends take these parts; none imports another package's
launcher (``bot`` imports nothing of ``cyoa``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cyoa.settings import Settings
from data import STORIES_DIR
from data.validation import load_stories
from engine.checks import CheckRules
from engine.errors import ConfigError
from engine.ports import SceneWriter, TableStore
from engine.queue import BatchingWriter
from engine.turns import EngineRules, Premise, StoryEngine
from engine.writers import Writers

if TYPE_CHECKING:
    from bot.client import CyoaBot
    from engine.tables import Tables

log = logging.getLogger(__name__)


def bundled_premises(folder: Path = STORIES_DIR) -> list[Premise]:
    """The premises (and lore) of the valid bundled stories, to draw new games from."""
    stories, _ = load_stories(folder)
    return [Premise(story.genre, story.premise, story.lore) for story in stories]


class Wiring:
    """Builds the shared parts from the settings; torch and MLflow are imported only when a model loads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.decoding = settings.decoding()

    def wrap(self, writer: SceneWriter) -> SceneWriter:
        # A scene's branches are separate requests, most voted first: the queue batches them into one call.
        return BatchingWriter(writer, max_batch=self.settings.decoder_slots,
                              deadline_seconds=self.settings.write_deadline)

    async def load(self, uri: str) -> SceneWriter:
        """The model at ``uri`` (``models:/name@champion``, ``models:/name/3``) behind its own queue."""
        from models.writer import ModelWriter  # torch and MLflow take seconds to import: only when loading

        return self.wrap(await ModelWriter.load(self.settings.tracking, uri, self.decoding))

    async def load_version(self, version: str) -> SceneWriter:
        """A registered version by name (``cyoa-storyteller/2``): what ``Writers`` loads a resumed game with."""
        return await self.load(f"models:/{version}")

    async def engine(self, writers: Writers) -> StoryEngine:
        """The story engine over ``writers``, with the operator's block list and the bundled premises."""
        rules = EngineRules(checks=CheckRules(block_list=self.settings.blocked_words))
        # Reading and validating the story files is file I/O: off the event loop.
        return StoryEngine(writers, rules, premises=await asyncio.to_thread(bundled_premises))


def discord_frontend(engine: StoryEngine, store: TableStore) -> CyoaBot:
    from bot.client import CyoaBot

    return CyoaBot(engine, store)


def web_frontend(engine: StoryEngine, store: TableStore, vote_seconds: int) -> Tables:
    from engine.servers import ServerSettings
    from engine.tables import Tables
    from web.launcher import PREFIX
    from web.presenter import WebPresenter

    return Tables(engine, store, WebPresenter(), prefix=PREFIX, defaults=ServerSettings(vote_window=vote_seconds))


def serve_main(bot: bool, web: bool, host: str, port: int | None) -> None:
    """``cyoa serve`` (the bot and the web together), ``cyoa bot`` and ``cyoa web``: build the parts once (one
    store, one champion behind one queue, one engine, the champion watcher) and run the frontends asked for
    until SIGTERM or Ctrl-C. ``port``: where the web listens, or with no web ``/health`` and ``/metrics``;
    None: no HTTP at all."""
    from cyoa.service import Parts, run_service
    from data.store import SQLiteGameStore
    from models.pretrained import set_cache_dir
    from models.reload import ChampionWatcher

    settings = Settings()
    set_cache_dir(settings.bases)
    token = ""
    if bot:
        from bot.launcher import NO_TOKEN

        if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
            raise ConfigError(NO_TOKEN)
        token = settings.discord_token.get_secret_value().strip()
    wiring = Wiring(settings)

    async def session() -> None:
        async with SQLiteGameStore(settings.games_db) as store:
            champion = await wiring.load(settings.model_uri("champion"))
            writers = Writers(champion, loader=wiring.load_version, challenger_share=settings.challenger_share)
            watcher = ChampionWatcher(writers, settings.tracking, settings.model_name, settings.reload_seconds,
                                      wrap=wiring.wrap, decoding=wiring.decoding)
            await watcher.check()  # the challenger, if games are to be shared with it
            log.info("storyteller %s in service (challenger: %s, %.0f%% of new games)", writers.champion,
                     writers.challenger or "none", 100 * settings.challenger_share)
            engine = await wiring.engine(writers)  # one engine: the bot's and the web's games share the model
            frontends = Parts(writers, token=token, watcher=watcher, host=host, port=port,
                              bot=discord_frontend(engine, store) if bot else None,
                              web=web_frontend(engine, store, settings.web_vote_seconds) if web else None)
            await run_service(frontends)

    asyncio.run(session())


def bot_main() -> None:
    """``cyoa bot``: the Discord bot alone."""
    serve_main(bot=True, web=False, host="127.0.0.1", port=None)


def web_main(host: str, port: int) -> None:
    """``cyoa web``: the browser frontend alone."""
    serve_main(bot=False, web=True, host=host, port=port)
