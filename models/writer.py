"""The engine's ``SceneWriter``, backed by a loaded storyteller: one model serves every game."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from data.tracking import TrackingTarget
from engine.ports import WriteRequest, WrittenScene
from models.config import Sampling
from models.registry import load_storyteller
from models.storyteller import Storyteller


class ModelWriter:
    """Generates every context of a call in one batched ``generate``, on a worker thread.

    The model is loaded once (``ModelWriter.load``); a lock keeps one generation at a time, since two
    would only fight over the same CPU cores.
    """

    def __init__(self, storyteller: Storyteller, sampling: Sampling | None = None) -> None:
        self.storyteller = storyteller
        self.sampling = sampling or storyteller.sampling
        self._lock = asyncio.Lock()

    @classmethod
    async def load(cls, target: TrackingTarget, uri: str) -> ModelWriter:
        storyteller = await asyncio.to_thread(load_storyteller, target, uri)
        return cls(storyteller)

    @property
    def model_version(self) -> str:
        return self.storyteller.version

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if not requests:
            return []
        contexts = [request.context for request in requests]
        must_end = [request.must_end for request in requests]
        may_end = [request.may_end for request in requests]
        async with self._lock:
            texts = await asyncio.to_thread(self.storyteller.write, contexts, self.sampling, None, must_end, may_end)
        return [WrittenScene(text, self.model_version) for text in texts]
