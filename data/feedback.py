"""The feedback harvest: what play teaches the storyteller, as new training steps and preference pairs.

Pure logic, no I/O: ``harvest(games, opted_out, existing, options)`` turns saved games into

- **steps** (``data.steps.Step``): one per scene the players chose, with the story so far as its history;
- **preference pairs** (``PreferencePair``): two answers to the same prompt and which one the players
  preferred: the vote winner's pre-written branch over each losing branch, a retry's replacement over the
  version it replaced, a 👍-rated version over a 👎-rated one of the same scene.

Every candidate is dropped by the first filter it fails, in the order of ``STEP_FILTERS`` / ``PAIR_FILTERS``,
and counted under that filter, so kept + dropped = candidates. Play in a public server is open to anyone, a
troll or a bot account included, so a row needs more than the absence of complaints: a positive signal from
more than one player, text that passes automatic checks, and no single player deciding too much of it. The
rules, and why:

- **opted_out**: opted-out players count as if they had never played. Their ratings are ignored, their votes
  are removed before a choice is judged, and a choice stands only if it is still a top choice of the votes
  left (so a scene their vote decided is dropped). A choice made without a vote (the terminal) stands if
  one of the game's players has not opted out. A game whose owner opted out is dropped whole: its premise may
  be their own words.
- **unvoted**: a choice drawn at random because nobody voted is no judgement of the players.
- **repaired**: the engine's marked placeholder scenes are not prose to learn from.
- **rated_down**: a scene with net thumbs down, or mean stars below ``min_rating``. Training scores the
  prompt's tokens too (``TrainConfig.prompt_loss``), so a step is dropped when *any* of its scenes (history,
  current or next) is rated down or repaired, not only the next one.
- **too_short** / **looping** / **garbled**: automatic checks on the text a row teaches (``data.text_quality``),
  each with a ``FeedbackOptions`` threshold: a narration under ``min_words`` (the engine's own floor: a
  shorter one is a cut-off answer kept by laxer rules); a narration whose word 3-grams repeat an earlier one
  more than ``max_repeated_trigrams`` of the time (the bundled scenes reach 4.7 %; a 26-word sentence said
  again in a 96-word scene gives 20 %); more than ``invented_words_allowed`` invented words *and* a share of them above
  ``max_invented_share`` (one unknown word is a name or a rare word; the bundled scenes reach 2.5 %, the old
  starter's garbled scenes 4-25 %), or any word run together past what English writes. Steps check every
  scene (history, current and next, for the reason given under ``rated_down``); pairs check the chosen
  answer only: DPO scores the answers, not the prompt, and a garbled *rejected* answer is a fine lesson.
- **unsupported**: a step's next scene needs a 👍 (or ⭐ / ``up_stars`` stars) from at least
  ``min_supporters`` distinct opted-in players, each judged on their own ratings (a player's 👍 and 👎 of
  the same scene cancel out). One account alone, or a vote with nobody rating, is not enough; with the default
  of 2 a troll needs a second account or a real player's agreement. The scenes before it need no 👍 of their
  own: the players who rated the next scene up read the story that led there, any of them could have rated
  a bad one down (which drops every step after it, ``rated_down``), and every one is checked as text. 1 suits
  a single-owner terminal setup (``cyoa play``: one player, who rates with stars). For pairs the same
  threshold applies to the players who stated the preference: a ``vote`` pair needs that many opted-in
  voters for the winning choice (a terminal choice counts as its one player); a ``rating`` pair the players
  who rated the chosen version up or the rejected one down; a ``retry`` pair those players plus the one who
  retried (not recorded: only the game's starter or a moderator may, and it is counted as the starter, so
  the count is never too high).
- **blocked**: a word of the block list (global plus the game's own) anywhere in the row.
- **duplicate** / **near_duplicate**: the next scene equals, or shares ``near_duplicate`` (60 %) of its word
  3-grams with (``engine.checks.overlap``), a scene of the existing dataset (every split, so no test scene
  leaks into training) or a step harvested before it (games in order of creation: older play wins).
- **player_cap**: no player may decide more than ``max_player_share`` (25 %) of an export's steps, and
  separately of its pairs, or ``player_cap_floor`` (10) rows if that is more. A row is *decided* by the
  players whose signal made it pass: a step by its next scene's supporters and the opted-in voters of the
  choice that led there (the game's player for a terminal choice), a pair by the players counted under
  ``unsupported``. Rows are taken in order (older play first) and one whose deciders include a player at the
  cap is dropped; the cap is then recomputed from what is kept, until each player is within
  ``max(floor, share * kept)``. The floor keeps a small export from being emptied (with three friends who
  decide every step together the share alone would allow none) while bounding what one account can add
  alone: 10 steps beside the 857 bundled train steps is about 1 %. It runs last, so a dropped row still
  counts as seen for the duplicate filters. ``max_player_share=1`` turns it off (a server of trusted players).

Ratings name a scene by its index; a retry puts a new version at the same index. A rating counts for the
version shown when it was given: the current one if given at or after it was shown, the one a retry
replaced if there was exactly one; any other (before an undo, between several retries) cannot be tied to
one text and is counted as ``ratings_unattributed``.

Votes deleted at their player's request (``/privacy forget``, ``Shown.forgotten_votes``) count like opted-out
ones: a closed vote stands only if the votes left still make its choice a top choice.

A perplexity check under the champion is not made: it would load the model into the export (torch, MLflow
artifacts) for a signal the text checks and the players' ratings already give.

Rows carry where they came from (game id, scene index, model version) and never a player's name or id.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import fmean
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from data.normalise import normalise_choice, normalise_text
from data.steps import HistoryItem, Step
from data.text_quality import invented_words, repeated_ngram_rate, run_together_words
from engine.checks import CheckRules, blocked_words, shingles
from engine.game import Game, Rating, Shown, Written
from engine.prompt_format import StoryContext, Turn, render_prompt, render_target
from engine.story import EndingKind

T = TypeVar("T")

FEEDBACK_FORMAT_VERSION = 1
ID_PREFIX = "play"
PREFERENCES_FILE = "preferences.jsonl"  # next to the splits of a harvested dataset version

TEXT_FILTERS: tuple[str, ...] = ("too_short", "looping", "garbled")
STEP_FILTERS: tuple[str, ...] = ("opted_out", "unvoted", "repaired", "rated_down", *TEXT_FILTERS, "unsupported",
                                 "blocked", "invalid", "duplicate", "near_duplicate", "player_cap")
PAIR_FILTERS: tuple[str, ...] = ("opted_out", "unvoted", "overruled", "repaired", *TEXT_FILTERS, "unsupported",
                                 "blocked", "invalid", "identical", "duplicate", "player_cap")


class PairKind(StrEnum):
    RATING = "rating"  # a 👍 (or high-star) version over a 👎 (or low-star) one of the same scene
    RETRY = "retry"  # the replacement over the version a retry replaced
    VOTE = "vote"  # the winning choice's pre-written branch over a losing choice's


@dataclass(frozen=True)
class FeedbackOptions:
    """The harvest's thresholds; the module's docstring says why each default is what it is."""

    min_rating: float = 3.0  # mean stars below this: rated down
    up_stars: float = 4.0  # mean stars at or above this (and no net thumbs down): rated up
    near_duplicate: float = 0.6  # the engine's near-copy share of word 3-grams
    block_list: frozenset[str] = frozenset()
    min_supporters: int = 2  # distinct opted-in players who rated a step's next scene up (0: no such rule)
    max_player_share: float = 0.25  # of an export's steps (and of its pairs) one player may decide
    player_cap_floor: int = 10  # rows any player may decide whatever the share
    min_words: int = CheckRules.min_words  # a narration's words
    max_repeated_trigrams: float = 0.1  # share of a narration's word 3-grams that repeat an earlier one
    max_invented_share: float = 0.03  # of a scene's lower-case words...
    invented_words_allowed: int = 1  # ...once it has more invented words than this
    text_checks: bool = True  # off only for a model that writes no English yet (the tests' tiny one)

    def as_params(self) -> dict[str, float | int]:
        """Every threshold by name, as logged (the block list's words are not: only how many)."""
        return {"min_rating": self.min_rating, "up_stars": self.up_stars, "near_duplicate": self.near_duplicate,
                "block_list_words": len(self.block_list), "min_supporters": self.min_supporters,
                "max_player_share": self.max_player_share, "player_cap_floor": self.player_cap_floor,
                "min_words": self.min_words, "max_repeated_trigrams": self.max_repeated_trigrams,
                "max_invented_share": self.max_invented_share,
                "invented_words_allowed": self.invented_words_allowed, "text_checks": int(self.text_checks)}


# --- what is exported ---------------------------------------------------------------------------
class SceneText(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    narration: str
    choices: list[str]
    ending: EndingKind | None = None


class PairSource(BaseModel):
    """Where a pair came from; no player appears here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    game: str
    scene: int  # index in the game's path of the scene both answers are versions of
    model_version: str  # of the chosen answer
    rejected_model_version: str


class PreferencePair(BaseModel):
    """One line of ``preferences.jsonl``: ``prompt + chosen`` and ``prompt + rejected`` are the model's full
    texts of the two answers (``render_prompt`` / ``render_target``). For a vote pair the answers follow two
    different actions, so the prompt stops at ``<|action|>`` and each answer starts with its action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: PairKind
    prompt: str
    chosen: str
    rejected: str
    genre: str
    premise: str
    lore: list[str]
    history: list[HistoryItem]
    scene: str | None  # the scene the answers follow (None: both are openings)
    choices: list[str]
    chosen_action: int | None  # index into ``choices``
    rejected_action: int | None
    chosen_scene: SceneText
    rejected_scene: SceneText
    source: PairSource

    def to_json(self) -> str:
        return self.model_dump_json()


def pairs_to_jsonl(pairs: Iterable[PreferencePair]) -> str:
    return "".join(pair.to_json() + "\n" for pair in pairs)


def pairs_from_jsonl(text: str) -> list[PreferencePair]:
    return [PreferencePair.model_validate_json(line) for line in text.split("\n") if line.strip()]


@dataclass
class Harvest:
    steps: list[Step]
    pairs: list[PreferencePair]
    counts: dict[str, int]


# --- near-duplicates ----------------------------------------------------------------------------
def _exact_key(text: str) -> str:
    return " ".join(text.casefold().split())


class ShingleIndex:
    """Texts by their word 3-grams: the largest ``engine.checks.overlap`` of a new text with any indexed one,
    without comparing it with each (thousands of scenes)."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._exact: set[str] = set()
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        key = _exact_key(text)
        if key in self._exact:
            return
        number = len(self._exact)
        self._exact.add(key)
        for shingle in shingles(text):
            self._postings[shingle].append(number)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and _exact_key(text) in self._exact

    def max_overlap(self, text: str) -> float:
        mine = shingles(text)
        if not mine:
            return 0.0
        hits: Counter[int] = Counter()
        for shingle in mine:
            hits.update(self._postings.get(shingle, ()))
        return max(hits.values(), default=0) / len(mine)


# --- ratings ------------------------------------------------------------------------------------
Version = tuple[int, int]  # (scene index, -1 for the version shown now or the index into ``rejected``)
CURRENT = -1


def verdict(ratings: Sequence[Rating], options: FeedbackOptions) -> str | None:
    """``down``, ``up`` or ``None`` (no judgement) from a version's ratings; comments are not judged."""
    thumbs = sum(1 if r.thumb == "up" else -1 for r in ratings if r.thumb is not None)
    stars = [r.stars for r in ratings if r.stars is not None]
    mean = fmean(stars) if stars else None
    if thumbs < 0 or (mean is not None and mean < options.min_rating):
        return "down"
    if thumbs > 0 or (mean is not None and mean >= options.up_stars):
        return "up"
    return None


def players_judging(ratings: Sequence[Rating], options: FeedbackOptions, judgement: str) -> frozenset[str]:
    """The players whose own ratings of a version give ``judgement`` (``up`` or ``down``)."""
    by_player: dict[str, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_player[rating.player].append(rating)
    return frozenset(player for player, own in by_player.items() if verdict(own, options) == judgement)


def attribute(game: Game, ratings: Iterable[Rating]) -> tuple[dict[Version, list[Rating]], int]:
    """The ratings of each version they can be tied to, and how many could not be."""
    by_version: dict[Version, list[Rating]] = defaultdict(list)
    unattributed = 0
    for rating in ratings:
        if rating.stars is None and rating.thumb is None:
            continue  # a comment only
        shown = game.path[rating.scene] if 0 <= rating.scene < len(game.path) else None
        if shown is not None and rating.at >= shown.shown_at:
            by_version[(rating.scene, CURRENT)].append(rating)
        elif shown is not None and len(shown.rejected) == 1:
            by_version[(rating.scene, 0)].append(rating)
        else:
            unattributed += 1
    return by_version, unattributed


# --- the text ------------------------------------------------------------------------------------
def text_fault(scene: Written, options: FeedbackOptions) -> str | None:
    """Which text check a scene fails (``too_short``, ``looping``, ``garbled``), or ``None``."""
    if not options.text_checks:
        return None
    narration = normalise_text(scene.narration)
    words = narration.split()
    if len(words) < options.min_words:
        return "too_short"
    if repeated_ngram_rate(" ".join(shingle_words(narration)), 3) > options.max_repeated_trigrams:
        return "looping"
    texts = [narration, *scene.choices]
    invented, total, _ = invented_words(texts)
    if invented > options.invented_words_allowed and invented / max(total, 1) > options.max_invented_share:
        return "garbled"
    if any(run_together_words(text) for text in texts):
        return "garbled"
    return None


def shingle_words(text: str) -> list[str]:
    """Words as ``engine.checks.shingles`` reads them (case-folded, punctuation dropped): "door." is "door"."""
    return re.findall(r"\w+", text.casefold())


# --- the cap on one player's share --------------------------------------------------------------
def _greedy(deciders: Sequence[frozenset[str]], cap: int) -> list[bool]:
    """Rows in order, each kept unless one of its deciders has decided ``cap`` kept rows already."""
    decided: Counter[str] = Counter()
    kept = []
    for players in deciders:
        fits = all(decided[player] < cap for player in players)
        if fits:
            decided.update(players)
        kept.append(fits)
    return kept


def player_cap(deciders: Sequence[frozenset[str]], share: float, floor: int) -> list[bool]:
    """Which rows stay when no player may decide more than ``max(floor, share * rows kept)``.

    The allowance depends on what is kept, which depends on the allowance: start from no cap and lower it to
    what the rows kept allow until it holds. It only goes down, and stops at ``floor`` at the latest."""
    cap = len(deciders)
    while True:
        kept = _greedy(deciders, cap)
        allowed = max(floor, math.floor(share * sum(kept) + 1e-9))
        if allowed >= cap:
            return kept
        cap = allowed


# --- one game -----------------------------------------------------------------------------------
def _n_choices(choices: Iterable[str]) -> list[str]:
    return [normalise_choice(choice) for choice in choices]


def _scene_text(written: Written) -> SceneText:
    return SceneText(narration=normalise_text(written.narration), choices=_n_choices(written.choices),
                     ending=written.ending)


def _target(scene: SceneText) -> str:
    return render_target(scene.narration, scene.choices, scene.ending)


@dataclass
class _Game:
    """One game as the harvest sees it: opted-out players removed, ratings tied to versions."""

    game: Game
    opted_out: frozenset[str]
    options: FeedbackOptions
    ratings: dict[Version, list[Rating]] = field(default_factory=dict)
    block_list: frozenset[str] = frozenset()
    faults: dict[int, str | None] = field(default_factory=dict)  # text_fault of each shown scene, once

    @property
    def path(self) -> list[Shown]:
        return self.game.path

    @property
    def dropped_whole(self) -> bool:
        """The owner opted out (the premise may be theirs), or every player did."""
        players = set(self.game.players)
        return self.game.owner in self.opted_out or (bool(players) and players <= self.opted_out)

    def verdict(self, version: Version) -> str | None:
        return verdict(self.ratings.get(version, []), self.options)

    def supporters(self, version: Version) -> frozenset[str]:
        return players_judging(self.ratings.get(version, []), self.options, "up")

    def opposers(self, version: Version) -> frozenset[str]:
        return players_judging(self.ratings.get(version, []), self.options, "down")

    @property
    def chooser(self) -> frozenset[str]:
        """Who makes a choice without a vote (the terminal's one player), and who retries: the starter."""
        player = self.game.owner or (self.game.players[0] if len(self.game.players) == 1 else None)
        return frozenset({player}) if player is not None and player not in self.opted_out else frozenset()

    def choice_deciders(self, shown: Shown) -> frozenset[str]:
        """The opted-in players whose votes (or direct choice) took the choice made in ``shown``."""
        if shown.votes or shown.forgotten_votes:
            return frozenset(vote.player for vote in shown.votes
                             if vote.choice == shown.chosen and vote.player not in self.opted_out)
        return frozenset() if shown.tie_break else self.chooser

    def text_fault(self, index: int) -> str | None:
        """The text check the scene shown at ``index`` fails, if any."""
        if index not in self.faults:
            self.faults[index] = text_fault(self.path[index].scene, self.options)
        return self.faults[index]

    def choice_signal(self, shown: Shown) -> str | None:
        """Why the choice taken from ``shown`` is no judgement of opted-in players (``None``: it is one)."""
        if shown.votes or shown.forgotten_votes:
            counts = Counter(v.choice for v in shown.votes if v.player not in self.opted_out)
            if not counts or shown.chosen is None or counts[shown.chosen] < max(counts.values()):
                return "opted_out"  # only opted-out (or forgotten) players voted, or their votes decided it
            return None
        if shown.tie_break:
            return "unvoted"
        return "opted_out" if self.dropped_whole else None  # a direct choice by the game's players

    def blocked(self, texts: Iterable[str]) -> bool:
        return bool(self.block_list) and any(blocked_words(text, self.block_list) for text in texts)

    def history(self, upto: int) -> list[HistoryItem]:
        """The scenes before scene ``upto - 1``, with the choices taken in them."""
        return [HistoryItem(scene=normalise_text(s.scene.narration), choices=_n_choices(s.scene.choices),
                            chosen=s.chosen if s.chosen is not None else -1) for s in self.path[: max(0, upto - 1)]]

    def context(self, upto: int, action: str | None) -> StoryContext:
        """The full story so far before scene ``upto``, as a step's prompt has it (the trainer fits it to the
        window by tokens, oldest turns first)."""
        turns = [Turn(item.scene, item.choices[item.chosen]) for item in self.history(upto)]
        if upto > 0 and action is not None:
            turns.append(Turn(normalise_text(self.path[upto - 1].scene.narration), action))
        return StoryContext(self.game.genre, normalise_text(self.game.premise),
                            tuple(normalise_text(fact) for fact in self.game.lore), "", tuple(turns))


def _step(view: _Game, index: int) -> Step:
    """The step whose next scene is ``path[index + 1]``; raises ``ValidationError`` if it does not fit."""
    game, shown, following = view.game, view.path[index], view.path[index + 1].scene
    return Step(
        id=f"{ID_PREFIX}/{game.id}/{index}>{index + 1}@{following.model_version}", genre=game.genre,
        premise=normalise_text(game.premise), lore=[normalise_text(fact) for fact in game.lore],
        history=view.history(index + 1), scene=normalise_text(shown.scene.narration),
        choices=_n_choices(shown.scene.choices), chosen=shown.chosen if shown.chosen is not None else -1,
        next_scene=normalise_text(following.narration), next_choices=_n_choices(following.choices),
        ending=following.ending,
    )


def _step_texts(step: Step) -> list[str]:
    return [step.premise, *step.lore, *(t for h in step.history for t in (h.scene, *h.choices)), step.scene,
            *step.choices, step.next_scene, *step.next_choices]


@dataclass(frozen=True)
class _Candidate:
    """A pair before its filters: two versions answering the prompt of scene ``point``."""

    kind: PairKind
    point: int
    chosen: Written
    rejected: Written
    chosen_action: int | None = None
    rejected_action: int | None = None
    overruled: bool = False
    signal: str | None = None  # the choice signal of a vote pair
    deciders: frozenset[str] = frozenset()  # the players who stated this preference


def _candidates(view: _Game) -> list[_Candidate]:
    """Every pair the game offers, by point: ratings first (the most explicit), then retries, then votes."""
    out: list[_Candidate] = []
    for point, shown in enumerate(view.path):
        versions: list[tuple[Version, Written]] = [((point, CURRENT), shown.scene)]
        versions += [((point, n), old) for n, old in enumerate(shown.rejected)]
        action = view.path[point - 1].chosen if point > 0 else None
        ups = [(v, w) for v, w in versions if view.verdict(v) == "up"]
        downs = [(v, w) for v, w in versions if view.verdict(v) == "down"]
        out += [_Candidate(PairKind.RATING, point, up, down, action, action,
                           deciders=view.supporters(u) | view.opposers(d)) for u, up in ups for d, down in downs]
        current_down = view.verdict((point, CURRENT)) == "down"
        out += [_Candidate(PairKind.RETRY, point, shown.scene, old, action, action,
                           overruled=current_down or view.verdict((point, n)) == "up",
                           deciders=view.chooser | view.supporters((point, CURRENT)) | view.opposers((point, n)))
                for n, old in enumerate(shown.rejected)]
        if point > 0:
            before = view.path[point - 1]
            winner = before.branches.get(before.chosen) if before.chosen is not None else None
            if winner is None:
                continue
            # The players' later word on the winning branch overrules their vote: a retry, or a 👎.
            overruled = winner != shown.scene or current_down
            signal, voters = view.choice_signal(before), view.choice_deciders(before)
            out += [_Candidate(PairKind.VOTE, point, winner, loser, before.chosen, choice, overruled, signal, voters)
                    for choice, loser in sorted(before.branches.items()) if choice != before.chosen]
    return out


def _pair(view: _Game, candidate: _Candidate, number: int) -> PreferencePair:
    point, game = candidate.point, view.game
    before = view.path[point - 1].scene if point > 0 else None
    choices = _n_choices(before.choices) if before is not None else []
    chosen, rejected = _scene_text(candidate.chosen), _scene_text(candidate.rejected)
    chosen_action = choices[candidate.chosen_action] if candidate.chosen_action is not None else None
    rejected_action = choices[candidate.rejected_action] if candidate.rejected_action is not None else None
    if candidate.kind == PairKind.VOTE:
        prompt = render_prompt(view.context(point, ""))  # ends at <|action|>: the answers differ from there
        chosen_text, rejected_text = f"{chosen_action}{_target(chosen)}", f"{rejected_action}{_target(rejected)}"
    else:
        prompt = render_prompt(view.context(point, chosen_action))
        chosen_text, rejected_text = _target(chosen), _target(rejected)
    return PreferencePair(
        id=f"{ID_PREFIX}/{game.id}/{point}/{candidate.kind}/{number}", kind=candidate.kind, prompt=prompt,
        chosen=chosen_text, rejected=rejected_text, genre=game.genre, premise=normalise_text(game.premise),
        lore=[normalise_text(fact) for fact in game.lore], history=view.history(point),
        scene=normalise_text(before.narration) if before is not None else None, choices=choices,
        chosen_action=candidate.chosen_action, rejected_action=candidate.rejected_action, chosen_scene=chosen,
        rejected_scene=rejected,
        source=PairSource(game=game.id, scene=point, model_version=candidate.chosen.model_version,
                          rejected_model_version=candidate.rejected.model_version),
    )


# --- the harvest --------------------------------------------------------------------------------
class _Harvester:
    def __init__(self, opted_out: frozenset[str], existing: Sequence[Step], options: FeedbackOptions) -> None:
        self.opted_out = opted_out
        self.options = options
        self.index = ShingleIndex(text for step in existing for text in (step.scene, step.next_scene))
        # Rows that passed every other filter, with the players who decided them, for the cap at the end.
        self.steps: list[tuple[Step, frozenset[str]]] = []
        self.pairs: list[tuple[PreferencePair, frozenset[str]]] = []
        self.pair_keys: set[tuple[str, str, str]] = set()
        self.counts: Counter[str] = Counter()

    def view(self, game: Game) -> _Game:
        own = [r for r in game.ratings if r.player not in self.opted_out]
        self.counts["ratings_ignored_opted_out"] += len(game.ratings) - len(own)
        ratings, unattributed = attribute(game, own)
        self.counts["ratings_unattributed"] += unattributed
        block = self.options.block_list | frozenset(word.casefold() for word in game.block_words)
        return _Game(game, self.opted_out, self.options, dict(ratings), block)

    def add_game(self, game: Game) -> None:
        view = self.view(game)
        self.counts["games"] += 1
        self.counts["games_opted_out"] += int(view.dropped_whole)
        for index, shown in enumerate(game.path[:-1]):
            if shown.chosen is not None:
                self.counts["steps_candidates"] += 1
                self.add_step(view, index)
        numbers: Counter[tuple[int, str]] = Counter()
        for candidate in _candidates(view):
            self.counts["pairs_candidates"] += 1
            numbers[(candidate.point, candidate.kind)] += 1
            self.add_pair(view, candidate, numbers[(candidate.point, candidate.kind)] - 1)

    def step_or_reason(self, view: _Game, index: int) -> Step | str:
        """The step whose next scene is ``path[index + 1]``, or the filter that drops it."""
        if view.dropped_whole:
            return "opted_out"
        signal = view.choice_signal(view.path[index])
        if signal is not None:
            return signal
        if any(shown.scene.repaired for shown in view.path[: index + 2]):
            return "repaired"
        if any(view.verdict((n, CURRENT)) == "down" for n in range(index + 2)):
            return "rated_down"
        faults = {view.text_fault(n) for n in range(index + 2)}
        fault = next((name for name in TEXT_FILTERS if name in faults), None)
        if fault is not None:
            return fault
        if len(view.supporters((index + 1, CURRENT))) < self.options.min_supporters:
            return "unsupported"
        try:
            step = _step(view, index)
        except ValidationError:
            return "invalid"
        if view.blocked(_step_texts(step)):
            return "blocked"
        if step.next_scene in self.index:
            return "duplicate"
        if self.index.max_overlap(step.next_scene) >= self.options.near_duplicate:
            return "near_duplicate"
        return step

    def add_step(self, view: _Game, index: int) -> None:
        step = self.step_or_reason(view, index)
        if isinstance(step, str):
            self.counts[f"steps_dropped_{step}"] += 1
            return
        deciders = view.supporters((index + 1, CURRENT)) | view.choice_deciders(view.path[index])
        self.steps.append((step, deciders))
        self.index.add(step.next_scene)

    def pair_or_reason(self, view: _Game, candidate: _Candidate, number: int) -> PreferencePair | str:
        """The pair, or the filter that drops it."""
        if view.dropped_whole:
            return "opted_out"
        if candidate.signal is not None:
            return candidate.signal
        if candidate.overruled:
            return "overruled"
        if candidate.chosen.repaired or candidate.rejected.repaired:
            return "repaired"
        fault = text_fault(candidate.chosen, self.options)
        if fault is not None:
            return fault
        if len(candidate.deciders) < self.options.min_supporters:
            return "unsupported"
        try:
            pair = _pair(view, candidate, number)
        except ValidationError:
            return "invalid"
        if view.blocked([pair.prompt, pair.chosen, pair.rejected]):
            return "blocked"
        if pair.chosen == pair.rejected:
            return "identical"
        if (pair.prompt, pair.chosen, pair.rejected) in self.pair_keys:
            return "duplicate"
        return pair

    def add_pair(self, view: _Game, candidate: _Candidate, number: int) -> None:
        pair = self.pair_or_reason(view, candidate, number)
        if isinstance(pair, str):
            self.counts[f"pairs_dropped_{pair}"] += 1
            return
        self.pair_keys.add((pair.prompt, pair.chosen, pair.rejected))
        self.pairs.append((pair, candidate.deciders))

    def capped(self, what: str, rows: Sequence[tuple[T, frozenset[str]]]) -> list[T]:
        """The rows within the per-player cap; counts what it dropped, how many players decided the rows
        kept, and the most any one of them decided."""
        options = self.options
        within = player_cap([deciders for _, deciders in rows], options.max_player_share, options.player_cap_floor)
        kept = [(row, deciders) for (row, deciders), fits in zip(rows, within, strict=True) if fits]
        decided = Counter(player for _, deciders in kept for player in deciders)
        self.counts[f"{what}_dropped_player_cap"] = len(rows) - len(kept)
        self.counts[f"{what}_deciders"] = len(decided)
        self.counts[f"{what}_most_by_one_player"] = max(decided.values(), default=0)
        return [row for row, _ in kept]

    def result(self) -> Harvest:
        """Every count, zeros included (stable MLflow metrics), in reading order: steps, then pairs."""
        steps, pairs = self.capped("steps", self.steps), self.capped("pairs", self.pairs)
        self.counts["steps_kept"], self.counts["pairs_kept"] = len(steps), len(pairs)
        self.counts.update(Counter(f"pairs_kept_{pair.kind}" for pair in pairs))
        keys = ["games", "games_opted_out", "ratings_ignored_opted_out", "ratings_unattributed",
                "steps_candidates", "steps_kept", *(f"steps_dropped_{name}" for name in STEP_FILTERS),
                "steps_deciders", "steps_most_by_one_player",
                "pairs_candidates", "pairs_kept", *(f"pairs_kept_{kind}" for kind in PairKind),
                *(f"pairs_dropped_{name}" for name in PAIR_FILTERS), "pairs_deciders", "pairs_most_by_one_player"]
        return Harvest(steps, pairs, {key: self.counts[key] for key in keys})


def harvest(games: Iterable[Game], opted_out: Iterable[str], existing: Sequence[Step],
            options: FeedbackOptions | None = None) -> Harvest:
    """New training steps and preference pairs from saved games (oldest first, so the result is the same for
    the same games in any order). ``existing``: every step of the dataset the harvest is added to."""
    harvester = _Harvester(frozenset(opted_out), existing, options or FeedbackOptions())
    for game in sorted(games, key=lambda g: (g.created_at, g.id)):
        harvester.add_game(game)
    return harvester.result()
