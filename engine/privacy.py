"""Forgetting a player: what a deletion request removes from a game, as pure rules. The store applies them to
every saved game (``TableStore.forget_player``), ``engine.tables.Tables.forget`` to the games in memory.

- Their votes (on every scene, undone ones too), ratings and written comments go, and so does their id from
  the game's players.
- A closed vote that loses votes records how many (``Shown.forgotten_votes``): the choice may have rested on
  them, so the votes left no longer explain it. The feedback harvest then treats it like a choice that
  opted-out votes decided (it stands only if the votes left still make it a top choice).
- A game they started goes whole (``started_by``). Its premise may be their own words (a game does not
  record whether the premise was typed or drawn from the bundled stories), and every scene was written from
  it, so no part of it can be kept without them; the other players' votes and ratings in it go with it.
  That is the rule the harvest already applies to a game whose starter opted out.

``until`` limits a forget to what was done up to a moment: what a store does when a save brings back data a
player asked it to forget before (a running bot's memory, a reaction read again after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from engine.game import Game


@dataclass
class Forgotten:
    """What a forget removed."""

    games: int = 0  # games the player started, deleted whole
    votes: int = 0
    ratings: int = 0  # stars and thumbs
    comments: int = 0

    def __iadd__(self, other: Forgotten) -> Forgotten:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def __bool__(self) -> bool:
        return any(getattr(self, item.name) for item in fields(self))


def players_in_data(game: Game) -> set[str]:
    """The players with a vote (undone scenes too) or a rating (or comment) in the game."""
    named = {r.player for r in game.ratings}
    named.update(vote.player for shown in (*game.path, *game.undone) for vote in shown.votes)
    return named


def players_in(game: Game) -> set[str]:
    """Every player a game names: its starter, its players, its voters and its raters."""
    return players_in_data(game) | set(game.players) | ({game.owner} if game.owner is not None else set())


def started_by(game: Game, player: str, until: datetime | None = None) -> bool:
    """The player started the game (at or before ``until``): forgetting them deletes it whole."""
    return game.owner == player and (until is None or game.created_at <= until)


def forget_in_game(game: Game, player: str, until: datetime | None = None) -> Forgotten:
    """Remove from ``game`` (in place) the player's votes on scenes shown at or before ``until`` and their
    ratings and comments given at or before it (``None``: all of them); their id leaves the game's players
    when nothing of theirs is left in it. Their own game is ``started_by``'s to judge, not this."""
    removed = Forgotten()
    for shown in (*game.path, *game.undone):
        if until is not None and shown.shown_at > until:
            continue
        kept = [vote for vote in shown.votes if vote.player != player]
        lost = len(shown.votes) - len(kept)
        if lost and shown.chosen is not None:
            shown.forgotten_votes += lost
        shown.votes, removed.votes = kept, removed.votes + lost
    kept_ratings = []
    for rating in game.ratings:
        if rating.player != player or (until is not None and rating.at > until):
            kept_ratings.append(rating)
        elif rating.stars is None and rating.thumb is None:
            removed.comments += 1
        else:
            removed.ratings += 1
    game.ratings = kept_ratings
    if player in game.players and player not in players_in_data(game):
        game.players = [p for p in game.players if p != player]
    return removed
