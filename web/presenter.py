"""The web's ``Presenter``: pushes what happens to a game to the browsers watching it (Server-Sent Events).

Each browser's event stream is an asyncio queue. Events say what changed and carry the new scene; a browser
reads its own view (its vote, the starter's controls) from the API when told, so no player's data is
broadcast. A slow browser whose queue is full misses events instead of holding memory: the next one it gets
makes it read the game again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.game import Game

QUEUE_SIZE = 64  # events a browser may fall behind by before it misses some
DRAFT_EVERY_SECONDS = 0.5  # a scene being written is streamed token by token: browsers get it this often


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]

    def encode(self) -> str:
        """The event in the SSE wire format (the JSON is one line, so one ``data:`` field)."""
        return f"event: {self.kind}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


def scene_event(game: Game) -> dict[str, Any]:
    shown = game.current
    return {"index": len(game.path) - 1, "narration": shown.scene.narration, "choices": list(shown.scene.choices),
            "ending": shown.scene.ending, "deadline": shown.vote_deadline.isoformat() if shown.vote_deadline else None,
            "status": str(game.status)}


class WebPresenter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._watchers: dict[str, set[asyncio.Queue[Event]]] = {}  # by place
        self._drafted: dict[str, float] = {}  # by place: when a draft was last pushed
        self.clock = clock

    # --- browsers -----------------------------------------------------------------------------
    def subscribe(self, place: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._watchers.setdefault(place, set()).add(queue)
        return queue

    def unsubscribe(self, place: str, queue: asyncio.Queue[Event]) -> None:
        watchers = self._watchers.get(place)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[place]

    def watchers(self, place: str) -> int:
        return len(self._watchers.get(place, ()))

    def publish(self, place: str, kind: str, data: dict[str, Any]) -> None:
        event = Event(kind, data)
        for queue in self._watchers.get(place, ()):
            if not queue.full():
                queue.put_nowait(event)

    # --- the Presenter protocol -----------------------------------------------------------------
    async def show(self, game: Game) -> str | None:
        # Unique within the game (a retry or an undo shows a scene at the same index again), and unguessable
        # is not needed: the API always names the current scene itself.
        message = f"scene-{len(game.path) - 1}-{secrets.token_hex(4)}"
        self._drafted.pop(game.place, None)
        self.publish(game.place, "scene", scene_event(game))
        return message

    async def read_votes(self, game: Game) -> dict[str, set[int]] | None:
        return None  # the votes live in the store only: there is nothing else to reconcile them with

    def draft(self, place: str, text: str | None) -> None:
        now = self.clock()
        if text and now - self._drafted.get(place, float("-inf")) < DRAFT_EVERY_SECONDS:
            return
        self._drafted[place] = now
        self.publish(place, "draft", {"text": text})

    async def vote_extended(self, game: Game) -> None:
        deadline = game.current.vote_deadline
        self.publish(game.place, "extended", {"deadline": deadline.isoformat() if deadline else None})

    async def failed(self, game: Game, reason: str) -> None:
        self.publish(game.place, "failed", {"reason": reason})

    async def notice(self, game: Game, text: str) -> None:
        self.publish(game.place, "notice", {"text": text})
