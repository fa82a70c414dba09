"""The feedback harvest: what play teaches the storyteller, as new training steps and preference pairs.

Pure logic, no I/O: ``harvest(games, opted_out, existing, options)`` turns saved games into

- **steps** (``data.steps.Step``): one per scene the players chose, with the story so far as its history;
- **preference pairs** (``PreferencePair``): two answers to the same prompt and which one the players
  preferred: the vote winner's pre-written branch over each losing branch, a retry's replacement over the
  version it replaced, a 👍-rated version over a 👎-rated one of the same scene.

Every candidate is dropped by the first filter it fails, in the order of ``STEP_FILTERS`` / ``PAIR_FILTERS``,
and counted under that filter, so kept + dropped = candidates. The rules, and why:

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
- **blocked**: a word of the block list (global plus the game's own) anywhere in the row.
- **duplicate** / **near_duplicate**: the next scene equals, or shares ``near_duplicate`` (60 %) of its word
  3-grams with (``engine.checks.overlap``), a scene of the existing dataset (every split, so no test scene
  leaks into training) or a step harvested before it (games in order of creation: older play wins).

Ratings name a scene by its index; a retry puts a new version at the same index. A rating counts for the
version shown when it was given: the current one if given at or after it was shown, the one a retry
replaced if there was exactly one; any other (before an undo, between several retries) cannot be tied to
one text and is counted as ``ratings_unattributed``.

Rows carry where they came from (game id, scene index, model version) and never a player's name or id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import fmean

from pydantic import BaseModel, ConfigDict, ValidationError

from data.normalise import normalise_choice, normalise_text
from data.steps import HistoryItem, Step
from engine.checks import blocked_words, shingles
from engine.game import Game, Rating, Shown, Written
from engine.prompt_format import StoryContext, Turn, render_prompt, render_target
from engine.story import EndingKind

FEEDBACK_FORMAT_VERSION = 1
ID_PREFIX = "play"
PREFERENCES_FILE = "preferences.jsonl"  # next to the splits of a harvested dataset version

STEP_FILTERS: tuple[str, ...] = ("opted_out", "unvoted", "repaired", "rated_down", "blocked", "invalid",
                                 "duplicate", "near_duplicate")
PAIR_FILTERS: tuple[str, ...] = ("opted_out", "unvoted", "overruled", "repaired", "blocked", "invalid", "identical",
                                 "duplicate")


class PairKind(StrEnum):
    RATING = "rating"  # a 👍 (or high-star) version over a 👎 (or low-star) one of the same scene
    RETRY = "retry"  # the replacement over the version a retry replaced
    VOTE = "vote"  # the winning choice's pre-written branch over a losing choice's


@dataclass(frozen=True)
class FeedbackOptions:
    min_rating: float = 3.0  # mean stars below this: rated down
    up_stars: float = 4.0  # mean stars at or above this (and no net thumbs down): rated up
    near_duplicate: float = 0.6  # the engine's near-copy share of word 3-grams
    block_list: frozenset[str] = frozenset()


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

    def choice_signal(self, shown: Shown) -> str | None:
        """Why the choice taken from ``shown`` is no judgement of opted-in players (``None``: it is one)."""
        if shown.votes:
            counts = Counter(v.choice for v in shown.votes if v.player not in self.opted_out)
            if not counts or shown.chosen is None or counts[shown.chosen] < max(counts.values()):
                return "opted_out"  # only opted-out players voted, or their votes decided it
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


def _candidates(view: _Game) -> list[_Candidate]:
    """Every pair the game offers, by point: ratings first (the most explicit), then retries, then votes."""
    out: list[_Candidate] = []
    for point, shown in enumerate(view.path):
        versions: list[tuple[Version, Written]] = [((point, CURRENT), shown.scene)]
        versions += [((point, n), old) for n, old in enumerate(shown.rejected)]
        action = view.path[point - 1].chosen if point > 0 else None
        ups = [w for v, w in versions if view.verdict(v) == "up"]
        downs = [w for v, w in versions if view.verdict(v) == "down"]
        out += [_Candidate(PairKind.RATING, point, up, down, action, action) for up in ups for down in downs]
        current_down = view.verdict((point, CURRENT)) == "down"
        out += [_Candidate(PairKind.RETRY, point, shown.scene, old, action, action,
                           overruled=current_down or view.verdict((point, n)) == "up")
                for n, old in enumerate(shown.rejected)]
        if point > 0:
            before = view.path[point - 1]
            winner = before.branches.get(before.chosen) if before.chosen is not None else None
            if winner is None:
                continue
            # The players' later word on the winning branch overrules their vote: a retry, or a 👎.
            overruled = winner != shown.scene or current_down
            signal = view.choice_signal(before)
            out += [_Candidate(PairKind.VOTE, point, winner, loser, before.chosen, choice, overruled, signal)
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
        self.steps: list[Step] = []
        self.pairs: list[PreferencePair] = []
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
        self.steps.append(step)
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
        self.pairs.append(pair)
        self.counts[f"pairs_kept_{pair.kind}"] += 1

    def result(self) -> Harvest:
        """Every count, zeros included (stable MLflow metrics), in reading order: steps, then pairs."""
        self.counts["steps_kept"], self.counts["pairs_kept"] = len(self.steps), len(self.pairs)
        keys = ["games", "games_opted_out", "ratings_ignored_opted_out", "ratings_unattributed",
                "steps_candidates", "steps_kept", *(f"steps_dropped_{name}" for name in STEP_FILTERS),
                "pairs_candidates", "pairs_kept", *(f"pairs_kept_{kind}" for kind in PairKind),
                *(f"pairs_dropped_{name}" for name in PAIR_FILTERS)]
        return Harvest(self.steps, self.pairs, {key: self.counts[key] for key in keys})


def harvest(games: Iterable[Game], opted_out: Iterable[str], existing: Sequence[Step],
            options: FeedbackOptions | None = None) -> Harvest:
    """New training steps and preference pairs from saved games (oldest first, so the result is the same for
    the same games in any order). ``existing``: every step of the dataset the harvest is added to."""
    harvester = _Harvester(frozenset(opted_out), existing, options or FeedbackOptions())
    for game in sorted(games, key=lambda g: (g.created_at, g.id)):
        harvester.add_game(game)
    return harvester.result()
