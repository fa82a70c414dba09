"""Game state: mutable, versioned and JSON-serialisable, apart from the immutable story content.

A game belongs to a place (a Discord channel, or the terminal), is written by one model version, and is a
path of shown scenes. Each shown scene keeps the choice taken from it, the versions that were rejected by a
retry, and the pre-generated branches (one per choice), which later become preference data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import CyoaError, StateError
from engine.story import EndingKind

STATE_VERSION = 1
"""Version of the serialised game state; ``Game.from_json`` refuses a newer one."""


def now() -> datetime:
    return datetime.now(UTC)


class GameStatus(StrEnum):
    WAITING = "waiting"  # a scene is shown and waits for a choice (a vote, or the terminal)
    WRITING = "writing"  # the next scene is being written
    ENDED = "ended"


class Written(BaseModel):
    """A scene as the model wrote it, after checks (or as the engine repaired it)."""

    model_config = ConfigDict(frozen=True)

    narration: str
    choices: tuple[str, ...] = ()
    ending: EndingKind | None = None
    model_version: str
    repaired: bool = False  # the model's answers all failed the checks; the engine wrote a marked fallback
    attempts: int = 1

    @property
    def is_ending(self) -> bool:
        return self.ending is not None


class Vote(BaseModel):
    model_config = ConfigDict(frozen=True)

    player: str
    choice: int
    at: datetime = Field(default_factory=now)


class Rating(BaseModel):
    """A player's rating of a scene: 1-5 stars, or a thumb (``up``/``down``), or a comment."""

    model_config = ConfigDict(frozen=True)

    player: str
    scene: int  # index of the scene in the game's path
    stars: int | None = Field(default=None, ge=1, le=5)
    thumb: str | None = Field(default=None, pattern=r"^(up|down)$")
    comment: str | None = None
    model_version: str
    at: datetime = Field(default_factory=now)


class Shown(BaseModel):
    """A scene shown to the players, with what happened to it."""

    scene: Written
    chosen: int | None = None
    rejected: list[Written] = Field(default_factory=list)  # earlier versions replaced by a retry
    branches: dict[int, Written] = Field(default_factory=dict)  # pre-generated next scenes, by choice index
    votes: list[Vote] = Field(default_factory=list)  # the standing vote of each player (latest counts)
    vote_deadline: datetime | None = None  # set while a vote is open
    vote_extended: bool = False  # the window was extended once for want of a quorum
    tie_break: list[int] | None = None  # the tied choices a seeded draw decided between (recorded)
    # Votes of a closed vote deleted at their player's request (``engine.privacy``): the choice may have rested
    # on them, so the votes left no longer tell why it was taken.
    forgotten_votes: int = 0
    message: str | None = None  # the frontend's handle to where the scene is shown (a Discord message id)
    shown_at: datetime = Field(default_factory=now)


class Game(BaseModel):
    state_version: int = STATE_VERSION
    id: str
    place: str
    players: list[str] = Field(default_factory=list)
    owner: str | None = None  # the player who started the game (may end, retry and undo it)
    genre: str
    premise: str
    lore: list[str] = Field(default_factory=list)
    model_version: str
    status: GameStatus = GameStatus.WRITING
    path: list[Shown] = Field(default_factory=list)
    undone: list[Shown] = Field(default_factory=list)  # scenes taken back by undo, newest last
    ratings: list[Rating] = Field(default_factory=list)
    max_scenes: int = 12
    block_words: list[str] = Field(default_factory=list)  # words banned in this game on top of the global list
    created_at: datetime = Field(default_factory=now)

    @property
    def current(self) -> Shown:
        if not self.path:
            raise CyoaError(f"game {self.id} has no scene yet")
        return self.path[-1]

    @property
    def ended(self) -> bool:
        return self.status == GameStatus.ENDED

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Game:
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"saved game is not JSON: {exc}") from exc
        version = raw.get("state_version") if isinstance(raw, dict) else None
        if not isinstance(version, int) or version > STATE_VERSION:
            raise StateError(f"saved game has state version {version!r}; this cyoa reads up to {STATE_VERSION}: "
                             f"upgrade cyoa")
        return cls.model_validate(raw)
