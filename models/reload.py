"""Hot reload: watch the registry's ``champion`` and ``challenger`` aliases and bring a version that moved
into service without a restart.

New games get the new champion; games in progress keep the version they started with (``engine.writers``).
A version that fails to load is logged, remembered (not retried every poll) and the old one stays in service.
After each poll the versions that neither alias nor a running game uses are unloaded (``Writers.prune``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from data.tracking import TrackingTarget
from engine.errors import CyoaError
from engine.ports import SceneWriter
from engine.writers import Writers
from models.fast_job import Decoding
from models.registry import version_by_alias
from models.writer import ModelWriter

log = logging.getLogger(__name__)


def version_name(name: str, number: object) -> str:
    """The model version as games record it (``ModelWriter.model_version``)."""
    return f"{name}/{number}"


@dataclass
class ChampionWatcher:
    writers: Writers
    target: TrackingTarget
    model_name: str
    interval_seconds: float = 60.0
    wrap: Callable[[SceneWriter], SceneWriter] = lambda writer: writer  # e.g. a BatchingWriter per version
    failed: dict[str, str] = field(default_factory=dict)  # versions that would not load, and why
    on_change: Callable[[str, str], None] | None = None  # (alias, version), e.g. to tell the operator
    follow_challenger: bool = True  # False where new games never go to the challenger (the terminal)
    decoding: Decoding | None = None  # how a new version writes (default: transformers)
    # The versions of running games; with it, every other version but the champion and the challenger is unloaded
    # after each poll. None: nothing is ever unloaded (who uses what is unknown).
    in_use: Callable[[], Collection[str]] | None = None

    async def _alias(self, alias: str) -> str | None:
        found = await asyncio.to_thread(version_by_alias, self.target, self.model_name, alias)
        return version_name(self.model_name, found.version) if found is not None else None

    async def _load(self, version: str) -> SceneWriter | None:
        if version in self.failed:
            return None
        held = self.writers.by_version.get(version)
        if held is not None:
            return held
        try:
            writer = self.wrap(await ModelWriter.load(self.target, f"models:/{version}", self.decoding))
        except CyoaError as exc:
            self.failed[version] = str(exc)
            log.error("model version %s failed to load, the current one stays in service: %s", version, exc)
            return None
        return writer

    async def check(self) -> list[str]:
        """Look at the aliases once; returns what changed, e.g. ``["champion: cyoa-storyteller/3"]``."""
        changes = []
        champion = await self._alias("champion")
        if champion is not None and champion != self.writers.champion:
            writer = await self._load(champion)
            if writer is not None:
                self.writers.set_champion(writer)
                changes.append(f"champion: {champion}")
        challenger = await self._alias("challenger") if self.follow_challenger else None
        if challenger == self.writers.champion:
            challenger = None
        if challenger != self.writers.challenger:
            writer = await self._load(challenger) if challenger is not None else None
            if writer is not None or challenger is None:
                self.writers.set_challenger(writer)
                changes.append(f"challenger: {challenger or 'none'}")
        for change in changes:
            log.info("now in service: %s", change)
            if self.on_change is not None:
                alias, version = change.split(": ")
                self.on_change(alias, version)
        return changes

    async def prune(self) -> list[str]:
        """Unload the versions nobody uses (see ``in_use``); returns them."""
        if self.in_use is None:
            return []
        dropped = await self.writers.prune(self.in_use())
        if dropped:
            log.info("unloaded %s: neither an alias nor a running game uses it", ", ".join(dropped))
        return dropped

    async def run(self) -> None:
        """Poll until cancelled; a failing poll (the tracking server is down, say) is logged and retried."""
        while True:
            try:
                await self.check()
            except CyoaError as exc:
                log.warning("cannot read the model registry: %s", exc)
            except Exception:  # an MLflow error we did not foresee must not stop the polling
                log.exception("reading the model registry failed")
            try:  # unloading needs no registry: it goes on while the tracking server is down
                await self.prune()
            except Exception:
                log.exception("unloading unused model versions failed")
            await asyncio.sleep(self.interval_seconds)
