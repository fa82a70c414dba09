"""Games played for real through the engine (the fake writer, the vote rules), for the feedback tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cyoa.settings import Settings
from data import STORIES_DIR
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.game import Game, Rating
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote

RULES = VoteRules(window_seconds=30, quorum=1)
PREMISE = "A pilot wakes in a flooded hangar beside a silent giant robot."
LORE = ["The robot answers only to a song.", "The hangar lies under the old harbour."]


def new_engine() -> StoryEngine:
    """One engine (and one fake writer) for all the games of a test: its scenes are then all different."""
    return StoryEngine(FakeWriter(), seed=3)


async def vote(engine: StoryEngine, game: Game, ballot: Mapping[str, int], pregenerate: bool = True) -> int:
    """One turn: branches written in advance, a vote opened, the ballot cast, the vote closed (extended once
    when nobody voted, as the rules say), and the winning choice taken."""
    if pregenerate:
        await engine.pregenerate(game)
    now = datetime.now(UTC)
    open_vote(game, RULES, now)
    for player, choice in ballot.items():
        cast(game, player, choice, now)
    result = close_vote(game, RULES, now, seed=11)
    if not result.closed:
        result = close_vote(game, RULES, now, seed=11)
    assert result.choice is not None
    await engine.choose(game, result.choice)
    return result.choice


async def play(engine: StoryEngine, ballots: Sequence[Mapping[str, int]], players: Sequence[str] = ("p-ana", "p-bo"),
               owner: str | None = "p-ana", block_words: Sequence[str] = (), genre: str = "mecha") -> Game:
    game = await engine.start("discord:guild:channel", genre, PREMISE, players=list(players), lore=LORE, owner=owner,
                              block_words=block_words)
    for ballot in ballots:
        await vote(engine, game, ballot)
    return game


def rate(game: Game, player: str, scene: int, stars: int | None = None, thumb: str | None = None) -> None:
    game.ratings.append(Rating(player=player, scene=scene, stars=stars, thumb=thumb,
                               model_version=game.path[scene].scene.model_version))


def cheer(game: Game, scenes: Iterable[int], players: Sequence[str] = ("p-ana", "p-bo")) -> None:
    """A 👍 from each of ``players`` on each of ``scenes``: the support a harvested step needs."""
    for scene in scenes:
        for player in players:
            rate(game, player, scene, thumb="up")


DECIDER_STATS = ("steps_deciders", "steps_most_by_one_player", "pairs_deciders", "pairs_most_by_one_player")


def nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    """The filter counts that are not zero, after checking that each candidate was kept or dropped exactly
    once (who decided the rows kept, ``DECIDER_STATS``, is left to the tests of the cap)."""
    for what in ("steps", "pairs"):
        dropped = sum(value for key, value in counts.items() if key.startswith(f"{what}_dropped_"))
        assert counts[f"{what}_kept"] + dropped == counts[f"{what}_candidates"], what
    kinds = sum(value for key, value in counts.items() if key.startswith("pairs_kept_"))
    assert kinds == counts["pairs_kept"]
    return {key: value for key, value in counts.items() if value and key not in DECIDER_STATS}


def use_few_stories(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six bundled stories as the stories the build reads: a small dataset the export adds to, quick to train."""
    folder.mkdir()
    for path in sorted(STORIES_DIR.glob("*.json"))[::10][:6]:
        shutil.copy(path, folder)
    monkeypatch.setenv("CYOA_STORIES_DIR", str(folder))
    return folder


async def save(games: Sequence[Game], opted_out: Sequence[str] = ()) -> None:
    """Into the real game store of the settings' home, as ``cyoa play`` and the bot do."""
    async with SQLiteGameStore(Settings().home / "cyoa.db") as store:
        for game in games:
            await store.save(game)
        for player in opted_out:
            await store.set_opt_out(player, True)
