"""``cyoa web``: builds the web frontend's parts (the game store, the champion behind a batching queue, the
engine, Tables with the web presenter) and serves the app with uvicorn. Games are resumed at start and saved
at shutdown (Ctrl-C or SIGTERM: uvicorn stops serving, then Tables closes)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

import uvicorn

from engine.checks import CheckRules
from engine.ports import SceneWriter, TableStore
from engine.tables import Tables
from engine.turns import EngineRules, Premise, StoryEngine
from engine.writers import Writers
from web.presenter import WebPresenter

log = logging.getLogger(__name__)

PREFIX = "web"  # the frontend part of a web game's place: web:<room>:<room>


def build_tables(writer: SceneWriter | Writers, store: TableStore, premises: Sequence[Premise],
                 block_list: frozenset[str] = frozenset()) -> Tables:
    """Tables for web games over a writer (already behind its queue) and a store."""
    engine = StoryEngine(writer, EngineRules(checks=CheckRules(block_list=block_list)), premises=premises)
    return Tables(engine, store, WebPresenter(), prefix=PREFIX)


class _Server(uvicorn.Server):
    """uvicorn's server, but a stop signal is not raised again once it has stopped serving: uvicorn does that
    so the process ends as the signal says, which for SIGTERM kills it before Tables could be closed."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        try:
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        except ValueError:  # not the main thread (a test): no signal handling
            yield
            return
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def serve(tables: Tables, host: str, port: int) -> None:
    from web.app import create_app

    resumed = await tables.resume()
    log.info("%d web game(s) resumed; serving on http://%s:%d", len(resumed), host, port)
    # proxy_headers: uvicorn's default, trusting X-Forwarded-* from 127.0.0.1 only (a local TLS proxy), so the
    # rate limits see the real address and the cookie is Secure over HTTPS. An open event stream would hold a
    # graceful shutdown forever: after a few seconds they are closed (the pages reconnect).
    server = _Server(uvicorn.Config(create_app(tables), host=host, port=port, log_level="info",
                                    timeout_graceful_shutdown=3))
    try:
        await server.serve()
    finally:
        await tables.close()  # every game is saved as it changes; this stops their timers and writing
        log.info("stopped; every game is saved")
