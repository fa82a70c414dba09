"""The one way every long-running frontend runs: ``cyoa serve`` (the bot and the web together over one engine
and one model), ``cyoa bot`` and ``cyoa web`` (each alone) all end in ``run_service``.

It runs the parts it is given side by side (the Discord bot, the web app or only ``/health`` and ``/metrics``,
the champion watcher) until SIGTERM or SIGINT, or until one part stops by itself (the bot's token refused).
Then it stops all of them in order: no new requests (uvicorn stops serving, the bot logs out), every game's
timers and writing stopped with the game saved (it is saved at every change; closing Tables only stops what
would change it), and the model queues closed. A restart resumes every game from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.writers import Writers
from web.service import Service

if TYPE_CHECKING:
    from bot.client import CyoaBot
    from models.reload import ChampionWatcher

log = logging.getLogger(__name__)
STOPPED = "stopped; every game is saved"


@dataclass
class Parts:
    """What one process runs: at least one frontend, over one set of writers."""

    writers: Writers
    bot: CyoaBot | None = None
    token: str = ""
    web: Tables | None = None  # the web frontend's session layer (a ``WebPresenter``)
    watcher: ChampionWatcher | None = None
    host: str = "127.0.0.1"
    port: int | None = None  # where the web (or, with no web, /health and /metrics) listens; None: no HTTP
    service: Service = field(init=False)

    def __post_init__(self) -> None:
        self.service = Service(self.writers)
        if self.bot is not None:
            self.service.tables["discord"] = self.bot.tables
            self.service.bot_ready = self.bot.is_ready
        if self.web is not None:
            self.service.tables["web"] = self.web
        if self.watcher is not None:  # versions a running game needs stay loaded
            self.watcher.in_use = self.versions_in_use

    def versions_in_use(self) -> set[str]:
        return {game.model_version for tables in self.service.tables.values() for game in tables.games.values()
                if not game.ended}


def _server(parts: Parts) -> Any:
    import uvicorn

    from web.app import create_app
    from web.service import service_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the service handles the signals and stops every part in order
            yield

    app = create_app(parts.web, service=parts.service) if parts.web is not None else service_app(parts.service)
    # proxy_headers: uvicorn's default, trusting X-Forwarded-* from 127.0.0.1 only (a local TLS proxy), so the
    # rate limits see the real address and the cookie is Secure over HTTPS. An open event stream would hold a
    # graceful shutdown forever: after a few seconds they are closed (the pages reconnect).
    return Server(uvicorn.Config(app, host=parts.host, port=parts.port or 0, log_level="info",
                                 timeout_graceful_shutdown=3))


async def run_service(parts: Parts) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (a test)
            loop.add_signal_handler(sig, stop.set)
    if parts.web is not None:
        resumed = await parts.web.resume()
        log.info("%d web game(s) resumed", len(resumed))
    server = _server(parts) if parts.port is not None else None
    main: list[asyncio.Task[Any]] = []
    if parts.bot is not None:
        from bot.launcher import run_bot

        main.append(asyncio.create_task(run_bot(parts.token, parts.bot), name="bot"))
    if server is not None:
        main.append(asyncio.create_task(server.serve(), name="http"))
        log.info("serving on http://%s:%d", parts.host, parts.port)
    helpers = [asyncio.create_task(parts.watcher.run(), name="watcher")] if parts.watcher is not None else []
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*main, stopping], return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping")
    finally:
        await _stop(parts, server, main, [*helpers, stopping])
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    for task in main:  # a part that failed by itself (the bot's token refused): its error, now all is stopped
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error
    log.info(STOPPED)


async def _stop(parts: Parts, server: Any, main: list[asyncio.Task[Any]], helpers: list[asyncio.Task[Any]]) -> None:
    if server is not None:
        server.should_exit = True
    steps: list[Coroutine[Any, Any, None]] = []
    if parts.bot is not None:
        steps.append(parts.bot.close())  # closes its Tables: timers and writing stop, games stay saved
    await asyncio.gather(*steps, return_exceptions=True)
    for task in helpers:
        task.cancel()
    await asyncio.gather(*main, *helpers, return_exceptions=True)
    if parts.web is not None:
        await parts.web.close()
    for writer in parts.writers.all():
        if isinstance(writer, BatchingWriter):
            await writer.close()
