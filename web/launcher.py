"""The web frontend's session layer over given parts. The wiring root (``cyoa.wiring``) builds the parts from
the settings and runs them with ``cyoa.service.run_service``, which resumes the web games at start, serves the
app with uvicorn and saves every game at shutdown (Ctrl-C or SIGTERM)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.checks import CheckRules
from engine.ports import SceneWriter, TableStore
from engine.servers import ServerSettings
from engine.tables import Tables
from engine.turns import EngineRules, Premise, StoryEngine
from engine.writers import Writers
from web.presenter import WebPresenter

PREFIX = "web"  # the frontend part of a web game's place: web:<room>:<room>


def build_tables(writer: SceneWriter | Writers, store: TableStore, premises: Sequence[Premise],
                 block_list: frozenset[str] = frozenset(), vote_seconds: int = 60) -> Tables:
    """Tables for web games over a writer (already behind its queue) and a store."""
    engine = StoryEngine(writer, EngineRules(checks=CheckRules(block_list=block_list)), premises=premises)
    return Tables(engine, store, WebPresenter(), prefix=PREFIX, defaults=ServerSettings(vote_window=vote_seconds))
