"""Live figures per model version: what players did with the stories a version wrote. Pure: no I/O.

Each figure is attributed to the version that wrote what it measures, and to the game's genre:

- ``games``: games by ``Game.model_version`` (the version that writes the game);
- ``scenes`` and ``repaired_scenes``: shown scenes (the path, not retried or undone ones) by the version that
  wrote each one;
- ``star_ratings`` / ``mean_rating`` (1-5 stars), ``thumbs_up`` / ``thumbs_down`` / ``thumbs_ratio`` (the
  share of thumbs that are up): ratings by ``Rating.model_version``, the version of the rated scene;
- ``closed_votes`` / ``mean_vote_margin`` and ``tie_breaks``: by the version that wrote the scene voted on.
  A vote is closed once its choice was taken; its margin is (top count - runner-up count) / voters, so 1.0 is
  a unanimous vote and 0.0 a tie. A vote nobody cast in has no margin (its tie-break still counts);
- per version only, from the store's output-check counters (``engine.checks.OutputStats``): ``outputs``,
  ``parse_failures`` and ``parse_failure_rate``, ``rejections`` (every failed check, parse failures
  included) and ``repairs`` (every placeholder written, shown or not).

Players who opted out of training count as if they had never rated or voted, as in the feedback harvest:
their ratings are left out and their votes do not enter a margin (a vote only they cast has none). These
figures gate ``cyoa promote --live``, which decides what model players get: a use of their play like training.
The games and scenes they played in still count (those are the model's, not theirs).

Logged to MLflow as ``live_<metric>`` and ``live_<genre>_<metric>`` (``flat_metrics``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.game import Game, Shown

PREFIX = "live"
# The named counters of ``OutputStats.as_dict``; every other counter is a rejection reason.
OUTPUT_COUNTERS = ("outputs", "parse_failures", "repairs")


@dataclass
class Figures:
    """Counts and sums for one version (or one version and genre); the means are derived from them."""

    games: int = 0
    scenes: int = 0
    repaired_scenes: int = 0
    star_ratings: int = 0
    stars: int = 0  # sum of all stars given, for the mean
    thumbs_up: int = 0
    thumbs_down: int = 0
    closed_votes: int = 0  # votes with at least one voter, which have a margin
    margins: float = 0.0  # sum of their margins, for the mean
    tie_breaks: int = 0

    @property
    def mean_rating(self) -> float | None:
        return self.stars / self.star_ratings if self.star_ratings else None

    @property
    def thumbs_ratio(self) -> float | None:
        thumbs = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / thumbs if thumbs else None

    @property
    def mean_vote_margin(self) -> float | None:
        return self.margins / self.closed_votes if self.closed_votes else None

    def metrics(self) -> dict[str, float]:
        """Every figure by name; a mean with nothing to average is left out rather than made up."""
        figures: dict[str, float | None] = {
            "games": self.games, "scenes": self.scenes, "repaired_scenes": self.repaired_scenes,
            "star_ratings": self.star_ratings, "mean_rating": self.mean_rating, "thumbs_up": self.thumbs_up,
            "thumbs_down": self.thumbs_down, "thumbs_ratio": self.thumbs_ratio, "closed_votes": self.closed_votes,
            "mean_vote_margin": self.mean_vote_margin, "tie_breaks": self.tie_breaks}
        return {key: float(value) for key, value in figures.items() if value is not None}


@dataclass
class VersionFigures:
    """One model version's live figures: in total, per genre, and its output-check counters."""

    version: str
    total: Figures = field(default_factory=Figures)
    per_genre: dict[str, Figures] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)

    def genre(self, genre: str) -> Figures:
        return self.per_genre.setdefault(genre, Figures())

    def output_metrics(self) -> dict[str, float]:
        checked = self.outputs.get("outputs", 0)
        failures = self.outputs.get("parse_failures", 0)
        out = {"outputs": float(checked), "parse_failures": float(failures),
               "rejections": float(sum(n for key, n in self.outputs.items() if key not in OUTPUT_COUNTERS)),
               "repairs": float(self.outputs.get("repairs", 0))}
        if checked:
            out["parse_failure_rate"] = failures / checked
        return out

    def metrics(self) -> dict[str, float]:
        """The version's total figures and its output-check figures."""
        return {**self.total.metrics(), **self.output_metrics()}

    def flat_metrics(self, prefix: str = PREFIX) -> dict[str, float]:
        """``<prefix>_<metric>`` and ``<prefix>_<genre>_<metric>``, as logged to MLflow."""
        out = {f"{prefix}_{key}": value for key, value in self.metrics().items()}
        for genre, figures in sorted(self.per_genre.items()):
            out.update({f"{prefix}_{genre}_{key}": value for key, value in figures.metrics().items()})
        return {key: value for key, value in out.items() if not math.isnan(value)}


LiveReport = dict[str, VersionFigures]
"""Version label (``<name>/<number>`` for a registered version, as ``ModelWriter.model_version`` gives it,
else whatever the writer reported) -> its figures."""


def vote_margin(shown: Shown, opted_out: frozenset[str] = frozenset()) -> float | None:
    """(top count - runner-up count) / voters of a scene's vote, opted-out voters left out; ``None`` when
    nobody else voted."""
    votes = [vote for vote in shown.votes if vote.player not in opted_out]
    counts = sorted(Counter(vote.choice for vote in votes).values(), reverse=True)
    voters = len({vote.player for vote in votes})
    if not voters:
        return None
    runner_up = counts[1] if len(counts) > 1 else 0
    return (counts[0] - runner_up) / voters


def _add_scene(figures: Figures, shown: Shown, opted_out: frozenset[str]) -> None:
    figures.scenes += 1
    figures.repaired_scenes += int(shown.scene.repaired)
    if shown.tie_break is not None:
        figures.tie_breaks += 1
    # A vote is closed once its choice was taken; an open vote (or a terminal choice) has no margin.
    margin = vote_margin(shown, opted_out) if shown.chosen is not None else None
    if margin is not None:
        figures.closed_votes += 1
        figures.margins += margin


def _add_game(report: LiveReport, game: Game, opted_out: frozenset[str]) -> None:
    def both(version: str) -> tuple[Figures, Figures]:
        entry = report.setdefault(version, VersionFigures(version))
        return entry.total, entry.genre(game.genre)

    for figures in both(game.model_version):
        figures.games += 1
    for shown in game.path:
        for figures in both(shown.scene.model_version):
            _add_scene(figures, shown, opted_out)
    for rating in (r for r in game.ratings if r.player not in opted_out):
        for figures in both(rating.model_version):
            if rating.stars is not None:
                figures.star_ratings += 1
                figures.stars += rating.stars
            figures.thumbs_up += int(rating.thumb == "up")
            figures.thumbs_down += int(rating.thumb == "down")


def live_report(games: Iterable[Game], output_counts: Mapping[str, Mapping[str, int]],
                opted_out: Iterable[str] = ()) -> LiveReport:
    """The figures of every version that wrote a game, a scene or a rated scene, or has output counts; the
    ratings and votes of ``opted_out`` players are left out."""
    report: LiveReport = {}
    excluded = frozenset(opted_out)
    for game in games:
        _add_game(report, game, excluded)
    for version, counters in output_counts.items():
        report.setdefault(version, VersionFigures(version)).outputs = dict(counters)
    return dict(sorted(report.items()))


def figures_of(report: LiveReport, version: str) -> VersionFigures:
    """A version's figures; one that never played has all counts zero."""
    return report.get(version) or VersionFigures(version)
