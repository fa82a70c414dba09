"""What the engine needs from the outside world, as Protocols. ``models`` and ``data`` implement them;
``engine.fakes`` ships fakes for tests of game rules."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.game import Game
from engine.places import Place
from engine.privacy import Forgotten
from engine.prompt_format import StoryContext

WAITING = 0  # the urgency of a scene a player is waiting for; a branch written in advance ranks 1, 2, ...
LEADING = 1  # the urgency of the branch leading its vote; the rest rank higher (`engine.votes.branch_urgencies`)


def _waiting() -> int:
    return WAITING


@dataclass(eq=False)
class Priority:
    """How soon a request should be written, read by a scheduling writer (``engine.queue.BatchingWriter``)
    each time it picks its next batch, so a branch moves up or down as the vote on its scene changes.

    ``urgency``: 0 when a player is waiting for the scene, else 1 for the choice leading its vote and more
    for the rest, by how far behind they are (``engine.votes.branch_urgencies``). ``started`` is set by the
    writer when the request goes to the model; ``dropped`` by the engine when the request is not wanted any
    more (its vote closed on another choice): a dropped request that has not started is never written."""

    urgency: Callable[[], int] = _waiting
    started: bool = False
    dropped: bool = False


TextCallback = Callable[[str], None]


@dataclass(frozen=True)
class WriteRequest:
    """One scene to write. ``must_end``: the story has reached its maximum length, so the answer must be an
    ending; ``may_end`` false: the story is too young to end. A constrained writer enforces both; the engine
    checks every writer's answer against them.

    ``priority``: how soon (see ``Priority``; none: as soon as possible). ``on_text``: a writer that can
    stream calls it, on the event loop, with the raw answer so far as it grows (the cold path shows it).
    ``tenant``: who the request is for when sharing the model fairly (``tenant_of`` the game's place: a
    Discord server), so one busy tenant cannot starve the others."""

    context: StoryContext
    must_end: bool = False
    may_end: bool = True
    priority: Priority | None = field(default=None, compare=False)
    on_text: TextCallback | None = field(default=None, compare=False)
    tenant: str = field(default="", compare=False)


def tenant_of(place: str) -> str:
    """The tenant of a place: its frontend and server (``discord:<server>:<channel>`` → ``discord:<server>``; a
    web room is its own); a string that names no place is its own tenant."""
    parsed = Place.parse(place)
    return f"{parsed.frontend}:{parsed.server}" if parsed is not None else place


@dataclass(frozen=True)
class WrittenScene:
    """A model's raw answer (to be parsed with ``engine.prompt_format.parse_output``) and who wrote it."""

    text: str
    model_version: str


class SceneWriter(Protocol):
    """Writes the next scene for each request. One call is one batched model call, so the branches of a vote
    are written together; implementations never block the event loop."""

    @property
    def model_version(self) -> str: ...

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]: ...


def overlapping_slots(writer: SceneWriter) -> int:
    """How many requests ``writer`` writes at once across overlapping calls: a continuously batching decoder
    says so with a ``slots_in_flight`` attribute (each request joins the ones being written as soon as a slot
    frees, so a call need not wait for the previous one). 0: its calls are best made one at a time."""
    return max(0, int(getattr(writer, "slots_in_flight", 0) or 0))


class GameStore(Protocol):
    """Where games live between moves and across restarts (``data.store.SQLiteGameStore`` is the real one,
    ``engine.fakes.MemoryStore`` the fake). Every ``save`` is atomic."""

    async def save(self, game: Game) -> None: ...

    async def load(self, game_id: str) -> Game: ...

    async def unfinished(self) -> list[Game]: ...

    async def add_output_counts(self, counts: dict[str, dict[str, int]]) -> None: ...


class ServerStore(Protocol):
    """Per-server settings, players' opt-outs and nicknames, for multi-player frontends (the bot, the web).
    ``data.store.SQLiteGameStore`` is the real one, ``engine.fakes.MemoryStore`` the fake."""

    async def server_settings(self, server: str) -> dict[str, Any]: ...

    async def save_server_settings(self, server: str, values: dict[str, Any]) -> None: ...

    async def set_opt_out(self, player: str, opted_out: bool) -> None: ...

    async def opted_out(self) -> frozenset[str]: ...

    async def set_nickname(self, player: str, nickname: str | None) -> None:
        """Keep the name a player chose for themselves (``None``: take it away)."""
        ...

    async def nicknames(self, players: Collection[str]) -> dict[str, str]:
        """The nicknames of those of ``players`` who chose one."""
        ...

    async def forget_player(self, player: str) -> Forgotten:
        """Delete the player's votes, ratings and comments from every saved game, the games they started
        (``engine.privacy``) and their nickname, in one transaction; record the forget, so that no later save
        writes back what they did before it, and opt them out of training. Returns what went."""
        ...


class TableStore(GameStore, ServerStore, Protocol):
    """What ``engine.tables.Tables`` needs: games, server settings and opt-outs in one store."""


class Presenter(Protocol):
    """Shows a table's game to its players (the Discord bot posts embeds; the terminal prints panels). Called
    by ``engine.tables``."""

    async def show(self, game: Game) -> str | None:
        """Show the game's current scene (with its open vote, if any); return a handle to where it is shown
        (a message id), which reactions will name. Raises ``DeliveryError`` when it cannot be shown."""
        ...

    async def read_votes(self, game: Game) -> dict[str, set[int]] | None:
        """The votes the players still show on the current scene (the reactions on its message), by player;
        ``None`` when they cannot be read. A restart reconciles the stored votes with these."""
        ...

    def draft(self, place: str, text: str | None) -> None:
        """A scene being written on demand in ``place``, as far as it is written (``""``: what was shown is
        taken back, the scene starts again; ``None``: the writing failed, remove the draft). Called for every
        token: the presenter decides how often it shows it; the next ``show`` of the place's game replaces
        the draft with the checked scene."""
        ...

    async def vote_extended(self, game: Game) -> None:
        """The vote had too few voters and was extended once (to ``game.current.vote_deadline``)."""
        ...

    async def failed(self, game: Game, reason: str) -> None:
        """A step the players did not ask for directly (closing a vote) failed; the vote is open again."""
        ...

    async def notice(self, game: Game, text: str) -> None:
        """Tell the game's players something happened to the game itself (it could not be saved just now)."""
        ...
