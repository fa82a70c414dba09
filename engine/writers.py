"""Which model writes which game: the champion writes new games, the challenger a set share of them, and a
game keeps the version that began it to its end (even after the champion moves on).

``Writers`` holds one ``SceneWriter`` per model version. New versions arrive with ``set_champion`` /
``set_challenger`` while games run (hot reload); a game whose version is not held (a resumed game from an
older champion) is loaded on demand with the ``loader`` the launcher gives, and falls back to the champion,
with a warning, if that version cannot be loaded any more. ``prune`` unloads the versions that neither the
aliases nor a running game use (each holds a whole model in memory); one needed again is loaded on demand.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from engine.errors import CyoaError
from engine.ports import SceneWriter

log = logging.getLogger(__name__)

Loader = Callable[[str], Coroutine[Any, Any, SceneWriter]]


class Writers:
    def __init__(self, champion: SceneWriter, loader: Loader | None = None, challenger_share: float = 0.0,
                 seed: int | None = None) -> None:
        if not 0.0 <= challenger_share <= 1.0:
            raise CyoaError(f"the challenger's share of new games must be between 0 and 1, not {challenger_share}")
        self.by_version: dict[str, SceneWriter] = {champion.model_version: champion}
        self.champion = champion.model_version
        self.challenger: str | None = None
        self.challenger_share = challenger_share
        self.loader = loader
        self.random = random.Random(seed)
        self._loading: dict[str, asyncio.Task[SceneWriter]] = {}

    def set_champion(self, writer: SceneWriter) -> None:
        self.by_version[writer.model_version] = writer
        self.champion = writer.model_version
        if self.challenger == writer.model_version:
            self.challenger = None  # promoted: it is the champion now

    def set_challenger(self, writer: SceneWriter | None) -> None:
        if writer is None:
            self.challenger = None
            return
        self.by_version[writer.model_version] = writer
        self.challenger = writer.model_version

    def for_new_game(self) -> SceneWriter:
        """The champion, or for ``challenger_share`` of new games the challenger (when there is one)."""
        if self.challenger is not None and self.random.random() < self.challenger_share:
            return self.by_version[self.challenger]
        return self.by_version[self.champion]

    async def for_version(self, version: str) -> SceneWriter:
        """The writer of ``version``: held, else loaded once, else (with a warning) the champion's."""
        held = self.by_version.get(version)
        if held is not None:
            return held
        if self.loader is None:
            log.warning("model version %s is not loaded; the champion %s writes for it", version, self.champion)
            return self.by_version[self.champion]
        task = self._loading.get(version)
        if task is None:
            task = self._loading[version] = asyncio.get_running_loop().create_task(self.loader(version))
        try:
            writer = await asyncio.shield(task)
        except CyoaError as exc:
            log.warning("model version %s cannot be loaded (%s); the champion %s writes for it", version, exc,
                        self.champion)
            self._loading.pop(version, None)
            return self.by_version[self.champion]
        self._loading.pop(version, None)
        self.by_version[version] = writer
        return writer

    async def prune(self, in_use: Collection[str]) -> list[str]:
        """Drop, and close, every held version that is not the champion, not the challenger and not in
        ``in_use`` (the versions of running games); returns the versions dropped.

        A writer with a request queued or being written (its ``busy``: a game that just ended may still have a
        branch in the queue) is kept for a later prune: closing a ``BatchingWriter`` cancels its worker and
        would leave that request's caller waiting forever.
        """
        keep = {self.champion, *in_use} | ({self.challenger} if self.challenger is not None else set())
        dropped = [version for version, writer in self.by_version.items()
                   if version not in keep and not _busy(writer)]
        unloaded = [self.by_version.pop(version) for version in dropped]  # no await between check and drop
        for writer in unloaded:
            await _close(writer)
        return dropped

    @property
    def versions(self) -> list[str]:
        return list(self.by_version)

    def all(self) -> list[SceneWriter]:
        return list(self.by_version.values())


def _busy(writer: SceneWriter) -> bool:
    """Whether a writer has work in flight; one that cannot say (it has no ``busy``) is taken as idle. Any
    writer with a ``close`` must say: dropping alone is harmless, as a caller in flight holds its own reference."""
    return bool(getattr(writer, "busy", False))


async def _close(writer: SceneWriter) -> None:
    """Close a dropped writer if it can be (a ``BatchingWriter`` stops its worker); a failure is logged, since
    the version is unloaded either way."""
    close = getattr(writer, "close", None)
    if not callable(close) or _busy(writer):  # busy again (a caller held it): it finishes, then is collected
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("closing the writer of model version %s failed", writer.model_version)
