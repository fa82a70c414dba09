"""Fakes of the engine's ports, for tests of game rules (real parts are used everywhere else)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from engine.errors import GameRuleError
from engine.game import Game, GameStatus
from engine.ports import WriteRequest, WrittenScene
from engine.privacy import Forgotten, forget_in_game, started_by
from engine.prompt_format import render_target

_WORDS = ("lantern", "rain", "bell", "shrine", "engine", "song", "river", "mask", "ticket", "storm", "ember",
          "petal", "compass", "ladder", "kettle", "lullaby", "thunder", "mirror", "feather", "harbor")


class FakeWriter:
    """Answers with scripted texts in order, or else a well-formed scene that names the action it follows
    (an ending when the request says ``must_end``). Records every batch it was asked for."""

    def __init__(self, script: Sequence[str] = (), model_version: str = "fake/1") -> None:
        self.script = list(script)
        self.calls: list[list[WriteRequest]] = []
        self._version = model_version
        self._count = 0

    @property
    def model_version(self) -> str:
        return self._version

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        self.calls.append(list(requests))
        answers = [self._answer(request) for request in requests]
        for request, answer in zip(requests, answers, strict=True):
            if request.on_text is not None:  # streams as a real writer does: the answer so far, word by word
                words = answer.split(" ")
                for count in range(1, len(words) + 1):
                    request.on_text(" ".join(words[:count]))
                    await asyncio.sleep(0)
        return [WrittenScene(answer, self._version) for answer in answers]

    def _answer(self, request: WriteRequest) -> str:
        if self.script:
            return self.script.pop(0)
        self._count += 1
        n = self._count
        action = request.context.path[-1].action if request.context.path else "open your eyes"
        # Each scene differs from every other in most of its words, so the near-copy check lets it through.
        narration = (f"Scene {n}. You {action[:1].lower()}{action[1:]}. "
                     + " ".join(f"{word}{n}" for word in _WORDS[n % len(_WORDS):] + _WORDS[: n % len(_WORDS)]))
        if request.must_end:
            return render_target(narration, [], "good")
        return render_target(narration, [f"Take path {self._count}-a", f"Take path {self._count}-b",
                                         f"Wait and watch {self._count}"], None)


class MemoryStore:
    """A ``GameStore`` in memory: saved games are copies, as a real store's would be."""

    def __init__(self) -> None:
        self.games: dict[str, str] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self.opt_outs: set[str] = set()
        self.names: dict[str, str] = {}

    async def save(self, game: Game) -> None:
        self.games[game.id] = game.to_json()

    async def load(self, game_id: str) -> Game:
        if game_id not in self.games:
            raise GameRuleError(f"no saved game {game_id!r}")
        return Game.from_json(self.games[game_id])

    async def unfinished(self) -> list[Game]:
        games = [Game.from_json(text) for text in self.games.values()]
        return [game for game in games if game.status != GameStatus.ENDED]

    async def add_output_counts(self, counts: dict[str, dict[str, int]]) -> None:
        for version, by_counter in counts.items():
            totals = self.counts.setdefault(version, {})
            for counter, n in by_counter.items():
                totals[counter] = totals.get(counter, 0) + n

    async def all_games(self) -> list[Game]:
        return [Game.from_json(text) for text in self.games.values()]

    async def server_settings(self, server: str) -> dict[str, Any]:
        return dict(self.settings.get(server, {}))

    async def save_server_settings(self, server: str, values: dict[str, Any]) -> None:
        self.settings[server] = dict(values)

    async def set_opt_out(self, player: str, opted_out: bool) -> None:
        (self.opt_outs.add if opted_out else self.opt_outs.discard)(player)

    async def opted_out(self) -> frozenset[str]:
        return frozenset(self.opt_outs)

    async def set_nickname(self, player: str, nickname: str | None) -> None:
        if nickname is None:
            self.names.pop(player, None)
        else:
            self.names[player] = nickname

    async def nicknames(self, players: Collection[str]) -> dict[str, str]:
        return {player: self.names[player] for player in players if player in self.names}

    async def forget_player(self, player: str) -> Forgotten:
        self.names.pop(player, None)
        forgotten = Forgotten()
        for game_id, text in list(self.games.items()):
            game = Game.from_json(text)
            if started_by(game, player):
                del self.games[game_id]
                forgotten.games += 1
            else:
                forgotten += forget_in_game(game, player)
                self.games[game_id] = game.to_json()
        self.opt_outs.add(player)
        return forgotten


class RecordingPresenter:
    """A ``Presenter`` that shows nothing and records what it was asked to show: the scene number of each
    ``show`` (message ids ``message-1``, ``message-2``... in order), the failures, notices and drafts."""

    def __init__(self) -> None:
        self.shown: list[int] = []
        self.failures: list[str] = []
        self.notices: list[str] = []
        self.drafts: list[tuple[str, str | None]] = []

    async def show(self, game: Game) -> str | None:
        self.shown.append(len(game.path))
        return f"message-{len(self.shown)}"

    async def read_votes(self, game: Game) -> dict[str, set[int]] | None:
        return None

    def draft(self, place: str, text: str | None) -> None:
        self.drafts.append((place, text))

    async def vote_extended(self, game: Game) -> None:
        pass

    async def failed(self, game: Game, reason: str) -> None:
        self.failures.append(reason)

    async def notice(self, game: Game, text: str) -> None:
        self.notices.append(text)
