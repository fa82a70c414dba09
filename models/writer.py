"""The engine's ``SceneWriter``, backed by a loaded storyteller: one model serves every game."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from data.tracking import TrackingTarget
from engine.ports import WrittenScene
from engine.prompt_format import StoryContext
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

    async def write(self, contexts: Sequence[StoryContext]) -> list[WrittenScene]:
        if not contexts:
            return []
        async with self._lock:
            texts = await asyncio.to_thread(self.storyteller.write, list(contexts), self.sampling)
        return [WrittenScene(text, self.model_version) for text in texts]
