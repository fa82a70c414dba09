from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import GameRuleError
from engine.fakes import FakeWriter
from engine.game import Game
from engine.turns import StoryEngine
from engine.votes import (
    OUT_OF_REACH,
    VoteRules,
    branch_urgencies,
    cast,
    close_vote,
    everyone_voted,
    open_vote,
    standings,
    tally,
    tie_seed,
    withdraw,
)

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


def test_the_standings_lead_with_the_choice_the_vote_would_take_now() -> None:
    rules = VoteRules(quorum=0)  # a vote with no ballots closes too (its draw takes any choice)
    leaders = set()
    for seed in range(30):
        for ballots in ([], [0, 2], [0, 1, 2], [1, 1, 2], [2, 0, 2, 1]):
            game = game_with_vote(rules)
            for voter, choice in enumerate(ballots):
                cast(game, f"p{voter}", choice, T0)
            order = standings(game.current, seed)
            assert sorted(order) == [0, 1, 2]
            counts = [ballots.count(choice) for choice in order]
            assert counts == sorted(counts, reverse=True)  # most votes first
            assert order[0] == close_vote(game, rules, T0, seed=seed).choice  # a tie's leader is the draw's
            if ballots == [0, 1, 2]:
                leaders.add(order[0])
    assert leaders == {0, 1, 2}  # a three-way tie is not always led by the lowest number


def test_the_tie_seed_is_fixed_by_the_game_and_the_scene() -> None:
    game = game_with_vote(VoteRules())
    other = game_with_vote(VoteRules())
    assert tie_seed(game) == tie_seed(game) and tie_seed(game) != tie_seed(other)


def test_a_branch_is_as_urgent_as_its_choice_is_close_to_winning() -> None:
    game = game_with_vote(VoteRules())
    seed = tie_seed(game)
    assert sorted(branch_urgencies(game.current, seed)) == [1, 2, 3]  # no votes: the draw's choice, then by place
    cast(game, "ana", 2, T0)
    urgencies = branch_urgencies(game.current, seed)
    assert urgencies[2] == 1 and sorted(urgencies[:2]) == [5, 6]  # both a vote behind: a second, then a third
    cast(game, "bo", 0, T0)  # 0 and 2 tie: the draw's choice leads, the other lacks nothing
    urgencies = branch_urgencies(game.current, seed)
    leader = standings(game.current, seed)[0]
    assert urgencies[leader] == 1 and urgencies[2 - leader] == 2 and urgencies[1] == 6


def test_a_choice_the_players_still_to_vote_cannot_bring_level_ranks_after_every_other() -> None:
    game = game_with_vote(VoteRules())
    seed = tie_seed(game)
    cast(game, "ana", 0, T0)
    cast(game, "bo", 0, T0)
    assert max(branch_urgencies(game.current, seed)) < OUT_OF_REACH  # nobody expected: anything may happen
    assert max(branch_urgencies(game.current, seed, {"ana", "bo", "cy", "di"})) < OUT_OF_REACH  # two still to vote
    urgencies = branch_urgencies(game.current, seed, {"ana", "bo", "cy"})  # one to vote, two lacking
    assert urgencies[0] == 1 and urgencies[1] > OUT_OF_REACH and urgencies[2] > OUT_OF_REACH
    assert urgencies[1] != urgencies[2]
