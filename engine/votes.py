"""Voting on the next choice: one standing vote per player, a deadline, a quorum, and a recorded tie-break.

The rules are pure functions of the game state and the time, so a restart that reloads the game (votes,
deadline and all) carries on exactly where the vote was.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.errors import GameRuleError
from engine.game import Game, GameStatus, Shown, Vote


@dataclass(frozen=True)
class VoteRules:
    window_seconds: float = 60.0
    quorum: int = 1  # voters needed; below it the window is extended once, then the top choice wins


@dataclass(frozen=True)
class VoteResult:
    closed: bool  # False: the window was extended instead
    choice: int | None = None
    tie_break: tuple[int, ...] = ()


def open_vote(game: Game, rules: VoteRules, now: datetime) -> datetime:
    if game.status != GameStatus.WAITING:
        raise GameRuleError("there is nothing to vote on now")
    shown = game.current
    shown.votes, shown.vote_extended, shown.tie_break = [], False, None
    shown.vote_deadline = now + timedelta(seconds=rules.window_seconds)
    return shown.vote_deadline


def cast(game: Game, player: str, choice: int, now: datetime) -> None:
    """A player's vote; a later vote replaces their earlier one."""
    shown = game.current
    if shown.vote_deadline is None:
        raise GameRuleError("no vote is open")
    if not 0 <= choice < len(shown.scene.choices):
        raise GameRuleError(f"choice {choice + 1} does not exist")
    shown.votes = [v for v in shown.votes if v.player != player] + [Vote(player=player, choice=choice, at=now)]


def withdraw(game: Game, player: str, choice: int | None = None) -> None:
    """Take back a player's vote (only if it is still for ``choice``, when given)."""
    game.current.votes = [v for v in game.current.votes
                          if not (v.player == player and (choice is None or v.choice == choice))]


def tally(game: Game) -> Counter[int]:
    return Counter(v.choice for v in game.current.votes)


def everyone_voted(game: Game, players: Iterable[str] | None = None) -> bool:
    """Whether every one of ``players`` (default: the game's players) has a standing vote."""
    expected = set(game.players if players is None else players)
    voters = {v.player for v in game.current.votes}
    return bool(expected) and voters >= expected


def active_players(game: Game) -> set[str]:
    """The players still at the table: those who voted on the previous scene (nobody, at the opening)."""
    return {v.player for v in game.path[-2].votes} if len(game.path) >= 2 else set()


def tie_seed(game: Game) -> int:
    """The tie-break seed of the game's current vote: fixed by the game and the scene, so the draw is
    reproducible, and known while the vote is open (``standings`` reads it to rank the branches)."""
    return int(hashlib.sha256(f"{game.id}:{len(game.path)}".encode()).hexdigest()[:12], 16)


def _draw(tied: list[int], seed: int) -> int:
    return tied[0] if len(tied) == 1 else random.Random(seed).choice(tied)


def standings(shown: Shown, seed: int) -> list[int]:
    """The choices of ``shown`` in the order they stand: most votes first; within a tie, the one the draw
    seeded with ``seed`` picks first, then the rest by number. So the first is exactly the choice
    ``close_vote`` would take if the vote closed now (the branch worth writing first)."""
    counts = Counter(vote.choice for vote in shown.votes)
    groups: dict[int, list[int]] = {}
    for choice in range(len(shown.scene.choices)):
        groups.setdefault(counts.get(choice, 0), []).append(choice)
    order: list[int] = []
    for count in sorted(groups, reverse=True):
        tied = groups[count]
        first = _draw(tied, seed)
        order += [first, *(c for c in tied if c != first)]
    return order


OUT_OF_REACH = 1_000  # added to the urgency of a branch whose choice can no longer draw level


def branch_urgencies(shown: Shown, seed: int, expected: Collection[str] = ()) -> list[int]:
    """How urgent each choice's branch is (indexed by choice; 1 the most, ``engine.ports.LEADING``): 1 for
    the choice that would win now (``standings``); another comes first by the votes it lacks to draw level
    with that one, then by its place: ``1 + place + choices * lacking``, so a tied choice (lacking none)
    outranks one a vote behind, and within that a second outranks a third.

    A choice lacking more votes than the ``expected`` players (those who voted on the previous scene) have
    still to cast cannot draw level unless someone changes their vote: it ranks after every choice that
    can (``OUT_OF_REACH`` more), not dropped. With nobody expected (the opening's vote) every choice can."""
    order = standings(shown, seed)
    counts = Counter(vote.choice for vote in shown.votes)
    top = counts.get(order[0], 0)
    left = len(set(expected) - {vote.player for vote in shown.votes}) if expected else None
    urgencies = [0] * len(order)
    for place, choice in enumerate(order):
        lacking = top - counts.get(choice, 0)
        urgency = 1 + place + len(order) * lacking
        urgencies[choice] = urgency + (OUT_OF_REACH if left is not None and lacking > left else 0)
    return urgencies


def close_vote(game: Game, rules: VoteRules, now: datetime, seed: int) -> VoteResult:
    """Close the vote (at its deadline, or when every player has voted): below the quorum the window is
    extended once; then the top choice wins, and a tie is broken by a draw seeded with ``seed``."""
    shown = game.current
    if shown.vote_deadline is None:
        raise GameRuleError("no vote is open")
    voters = len({v.player for v in shown.votes})
    if voters < rules.quorum and not shown.vote_extended:
        shown.vote_extended = True
        shown.vote_deadline = now + timedelta(seconds=rules.window_seconds)
        return VoteResult(closed=False)
    counts = tally(game)
    top = max(counts.values(), default=0)
    tied = sorted(c for c in range(len(shown.scene.choices)) if counts.get(c, 0) == top)
    choice = _draw(tied, seed)  # the same draw as ``standings``
    shown.tie_break = tied if len(tied) > 1 else None
    shown.vote_deadline = None
    return VoteResult(closed=True, choice=choice, tie_break=tuple(tied) if len(tied) > 1 else ())
