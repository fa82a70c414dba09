"""The engine's ``SceneWriter``, backed by a loaded storyteller: one model serves every game.

The storyteller runs on the llama.cpp path (``models.fast_writer``) when it converts and the package is there,
else on transformers (``models.storyteller``); ``Decoding`` says which, and the log says why when it falls back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from data.tracking import TrackingTarget
from engine.ports import TextCallback, WriteRequest, WrittenScene
from engine.prompt_format import StoryContext
from models.config import Sampling
from models.fast_job import Decoding, fast_storyteller, record_conversion
from models.fast_writer import FastStoryteller
from models.gguf_export import FastPathUnavailableError
from models.registry import load_storyteller

log = logging.getLogger(__name__)


class Teller(Protocol):
    """What the writer needs of a storyteller: ``Storyteller`` (transformers) or ``FastStoryteller``."""

    version: str

    @property
    def sampling(self) -> Sampling: ...

    def write(self, contexts: Sequence[StoryContext], sampling: Sampling | None = None, seed: int | None = None,
              must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
              on_text: Callable[[int, str], None] | None = None) -> list[str]: ...


class ModelWriter:
    """Generates every context of a call in one batched model call, on a worker thread.

    The model is loaded once (``ModelWriter.load``). On transformers a lock keeps one generation at a time,
    since two would only fight over the same CPU cores; the llama.cpp path needs none (its own decoding
    thread takes every call's scenes into one batch).
    """

    def __init__(self, storyteller: Teller, sampling: Sampling | None = None, decoder: str = "transformers",
                 continuous: bool = False) -> None:
        self.storyteller = storyteller
        self.sampling = sampling or storyteller.sampling
        self.decoder = decoder  # which path writes: "llama.cpp" or "transformers"
        self.continuous = continuous  # llama.cpp: calls overlap, each scene joining as a slot frees
        self._lock = asyncio.Lock()

    @classmethod
    async def load(cls, target: TrackingTarget, uri: str, decoding: Decoding | None = None) -> ModelWriter:
        decoding = decoding or Decoding(kind="transformers")
        storyteller = await asyncio.to_thread(load_storyteller, target, uri)
        if decoding.kind == "transformers":
            return cls(storyteller)
        try:
            fast = await asyncio.to_thread(fast_storyteller, storyteller, decoding, True)
        except FastPathUnavailableError as exc:
            if decoding.kind == "llama.cpp":
                raise
            log.warning("%s writes with transformers (slower): %s", storyteller.version, exc)
            return cls(storyteller)
        await asyncio.to_thread(record_conversion, target, storyteller.version, fast.gguf_note)
        log.info("%s writes with llama.cpp (%s)", storyteller.version, fast.gguf_note)
        return cls(fast, decoder="llama.cpp", continuous=decoding.continuous)

    @property
    def model_version(self) -> str:
        return self.storyteller.version

    @property
    def slots_in_flight(self) -> int:
        """Requests written at once across overlapping calls (``engine.ports.overlapping_slots``): the llama.cpp
        path's slots when it batches continuously, each request joining as one frees; else 0, and calls run
        one at a time in batches (the default: measured faster, see the README's "Capacity")."""
        return self.storyteller.slots if self.continuous and isinstance(self.storyteller, FastStoryteller) else 0

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if not requests:
            return []
        contexts = [request.context for request in requests]
        must_end = [request.must_end for request in requests]
        may_end = [request.may_end for request in requests]
        on_text = _on_loop([request.on_text for request in requests], asyncio.get_running_loop())
        if isinstance(self.storyteller, FastStoryteller):
            # No lock and no worker thread held: the decoder's own thread writes, and this call's scenes join
            # the others being written. Cancelling this call takes its scenes out.
            answers = await asyncio.to_thread(self.storyteller.begin, contexts, self.sampling, None, must_end,
                                              may_end, on_text)
            try:
                texts = list(await asyncio.gather(*(asyncio.wrap_future(answer) for answer in answers)))
            finally:
                for answer in answers:
                    answer.cancel()  # nothing once written
        else:
            async with self._lock:
                texts = await asyncio.to_thread(self.storyteller.write, contexts, self.sampling, None, must_end,
                                                may_end, on_text)
        return [WrittenScene(text, self.model_version) for text in texts]


def _on_loop(callbacks: list[TextCallback | None], loop: asyncio.AbstractEventLoop,
             ) -> Callable[[int, str], None] | None:
    """One (row, text) callback for the worker thread that hands each row's text to its request's callback on
    the event loop (frontends are not thread-safe)."""
    if not any(callbacks):
        return None

    def forward(row: int, text: str) -> None:
        callback = callbacks[row]
        if callback is not None:
            loop.call_soon_threadsafe(callback, text)
    return forward
