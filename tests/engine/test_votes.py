from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import GameRuleError
from engine.fakes import FakeWriter
from engine.game import Game
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, everyone_voted, open_vote, tally, withdraw

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def game_with_vote(rules: VoteRules, players: list[str] | None = None) -> Game:
    game = asyncio.run(StoryEngine(FakeWriter()).start("channel", "mecha", "A pilot wakes.", players or []))
    open_vote(game, rules, T0)
    return game


def test_latest_vote_counts_and_withdrawal() -> None:
    game = game_with_vote(VoteRules())
    cast(game, "ana", 0, T0)
    cast(game, "ben", 1, T0)
    cast(game, "ana", 2, T0 + timedelta(seconds=5))  # ana changes her mind
    assert tally(game) == {1: 1, 2: 1} and len(game.current.votes) == 2
    withdraw(game, "ben", 0)  # not ben's current vote: nothing happens
    assert tally(game) == {1: 1, 2: 1}
    withdraw(game, "ben", 1)
    assert tally(game) == {2: 1}
    with pytest.raises(GameRuleError, match="choice 7 does not exist"):
        cast(game, "ana", 6, T0)


def test_quorum_extends_the_window_once_then_the_top_choice_wins() -> None:
    rules = VoteRules(window_seconds=30, quorum=2)
    game = game_with_vote(rules)
    cast(game, "ana", 1, T0)
    first = close_vote(game, rules, T0 + timedelta(seconds=30), seed=1)
    assert not first.closed and game.current.vote_extended
    assert game.current.vote_deadline == T0 + timedelta(seconds=60)
    second = close_vote(game, rules, T0 + timedelta(seconds=60), seed=1)
    assert second.closed and second.choice == 1 and game.current.vote_deadline is None


def test_a_tie_is_broken_by_a_seeded_draw_that_is_recorded() -> None:
    rules = VoteRules()
    results = set()
    for seed in range(20):
        game = game_with_vote(rules)
        cast(game, "ana", 0, T0)
        cast(game, "ben", 2, T0)
        result = close_vote(game, rules, T0, seed=seed)
        assert result.tie_break == (0, 2) and game.current.tie_break == [0, 2]
        assert result.choice == close_vote(game_with_tie(rules), rules, T0, seed=seed).choice  # same seed, same draw
        results.add(result.choice)
    assert results == {0, 2}


def game_with_tie(rules: VoteRules) -> Game:
    game = game_with_vote(rules)
    cast(game, "ana", 0, T0)
    cast(game, "ben", 2, T0)
    return game


def test_the_vote_can_close_when_every_player_has_voted() -> None:
    game = game_with_vote(VoteRules(), players=["ana", "ben"])
    cast(game, "ana", 0, T0)
    assert not everyone_voted(game)
    cast(game, "ben", 0, T0)
    assert everyone_voted(game)
