"""The story engine: starting a game, choosing, retrying, undoing, and writing every branch in advance.

Game rules live here and nowhere else; frontends (the terminal, the Discord bot) call these methods and
render the result. The model reaches the engine only through ``SceneWriter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from engine.checks import CheckRules, OutputStats, check_output, check_player_text
from engine.errors import GameRuleError, RejectedOutputError, StorytellerBusyError
from engine.game import Game, GameStatus, Shown, Written
from engine.genres import GENRE_IDS
from engine.ports import WAITING, Priority, SceneWriter, WriteRequest, tenant_of
from engine.prompt_format import StoryContext, Turn, partial_narration
from engine.story import EndingKind
from engine.votes import active_players, branch_urgencies, tie_seed
from engine.writers import Writers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Premise:
    """A premise a new game can be drawn from (the launcher gives the bundled stories' ones)."""

    genre: str
    premise: str
    lore: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineRules:
    recent_scenes: int = 4  # scenes given in full; older ones go into the rolling summary
    summary_words: int = 90
    max_attempts: int = 3  # answers tried per scene before the engine repairs
    min_scenes: int = 4  # no ending before this many scenes: a story that ends at once is no game
    max_scenes: int = 12  # the scene at this length must be an ending
    checks: CheckRules = field(default_factory=CheckRules)


REPAIR_MARK = "(The storyteller lost the thread here, so this scene is a placeholder.)"
REPAIR_CHOICES = ("Press on carefully", "Look around for another way", "Ask your companions what to do")


def _first_sentence(text: str, limit: int = 20) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:limit]) + ("…" if len(words) > limit else "")


def rolling_summary(turns: Sequence[Turn], max_words: int) -> str:
    """An extractive summary of older scenes: each one's first sentence and the action taken, newest kept."""
    parts = [f"{_first_sentence(t.scene)} You chose: {t.action}." for t in turns]
    while parts and len(" ".join(parts).split()) > max_words:
        parts.pop(0)
    return " ".join(parts)


MAX_PREMISE_CHARS = 300
Progress = Callable[[str], None]  # the narration so far of a scene being written on demand
BranchCallback = Callable[[int], Awaitable[None]]  # told each choice whose branch was just written


def _waiting_now() -> int:
    return WAITING


@dataclass
class _Branches:
    """The branches of one shown scene being written in advance: a task and a priority per choice."""

    shown: Shown
    seed: int  # the vote's tie-break seed, so a tied vote's leader is the choice its draw would take
    expected: frozenset[str]  # the players expected to vote: those who voted on the previous scene
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    priorities: dict[int, Priority] = field(default_factory=dict)

    def urgency_of(self, choice: int) -> Callable[[], int]:
        """The choice's urgency as the vote stands (``engine.votes.branch_urgencies``)."""
        def urgency() -> int:
            return branch_urgencies(self.shown, self.seed, self.expected)[choice]
        return urgency


class StoryEngine:
    def __init__(self, writer: SceneWriter | Writers, rules: EngineRules | None = None,
                 premises: Sequence[Premise] = (), stats: OutputStats | None = None, seed: int | None = None) -> None:
        # One writer, or several by model version (champion, challenger, older ones for running games).
        self.writers = writer if isinstance(writer, Writers) else Writers(writer)
        self.rules = rules or EngineRules()
        self.premises = list(premises)
        self.stats = stats or OutputStats()
        self.random = random.Random(seed)
        self._pregeneration: dict[str, asyncio.Task[dict[int, Written]]] = {}
        self._branches: dict[str, _Branches] = {}  # by game id: the branches of its current scene in progress

    @property
    def writer(self) -> SceneWriter:
        """The champion's writer: the one new games get unless the challenger is drawn."""
        return self.writers.by_version[self.writers.champion]

    # --- contexts -----------------------------------------------------------------------------
    def context(self, game: Game, upto: int, action: str | None) -> StoryContext:
        """What the model sees to write scene number ``upto`` (0 is the opening), after ``action`` was taken
        in scene ``upto - 1``."""
        turns: list[Turn] = []
        for shown in game.path[: max(0, upto - 1)]:
            if shown.chosen is not None:
                turns.append(Turn(shown.scene.narration, shown.scene.choices[shown.chosen]))
        if upto > 0 and action is not None:
            turns.append(Turn(game.path[upto - 1].scene.narration, action))
        keep = self.rules.recent_scenes
        older, recent = turns[:-keep] if keep else turns, turns[-keep:] if keep else []
        return StoryContext(game.genre, game.premise, tuple(game.lore),
                            rolling_summary(older, self.rules.summary_words), tuple(recent))

    # --- writing ------------------------------------------------------------------------------
    async def write_checked(self, game: Game, requests: Sequence[WriteRequest],
                            progress: Progress | None = None) -> list[Written]:
        """Write every request in one batched call; answers that fail a check are written again (only those,
        again batched) up to ``max_attempts`` times, then replaced by a clearly marked repair.

        ``progress`` (one request only): called with the narration so far while a streaming writer writes it,
        and with ``""`` when an attempt starts again (what was shown must be taken back)."""
        earlier = [shown.scene.narration for shown in game.path]
        checks = self.checks_for(game)
        writer = await self.writers.for_version(game.model_version)
        results: list[Written | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        if progress is not None and len(requests) == 1:
            requests = [replace(requests[0], on_text=lambda text: progress(partial_narration(text)))]
        for attempt in range(1, self.rules.max_attempts + 1):
            if not todo:
                break
            if progress is not None and attempt > 1:
                progress("")
            answers = await writer.write([requests[i] for i in todo])
            failed = []
            for index, answer in zip(todo, answers, strict=True):
                try:
                    request = requests[index]
                    scene = check_output(answer.text, earlier, checks, request.must_end, request.may_end)
                except RejectedOutputError as exc:
                    self.stats.record(answer.model_version, exc.reason)
                    failed.append(index)
                    continue
                self.stats.record(answer.model_version, None)
                results[index] = Written(narration=scene.narration, choices=scene.choices, ending=scene.ending,
                                         model_version=answer.model_version, attempts=attempt)
            todo = failed
        for index in todo:
            self.stats.repairs[writer.model_version] += 1
            results[index] = self._repair(requests[index], game.genre, writer.model_version)
        return [written for written in results if written is not None]

    def checks_for(self, game: Game) -> CheckRules:
        """The output checks for one game: the global block list plus the game's own words (a server's)."""
        return self.rules.checks.with_words(game.block_words)

    def _repair(self, request: WriteRequest, genre_id: str, version: str) -> Written:
        action = request.context.path[-1].action if request.context.path else None
        genre = genre_id.replace("_", " ")
        lead = f"You {action[:1].lower()}{action[1:]}." if action else f"Your {genre} story begins."
        narration = f"{REPAIR_MARK} {lead} For a moment nothing is certain, and the world waits for your next step."
        if request.must_end:  # a repaired ending only where the story must end now
            return Written(narration=narration, ending=EndingKind.NEUTRAL, model_version=version,
                           repaired=True, attempts=self.rules.max_attempts)
        return Written(narration=narration, choices=REPAIR_CHOICES, model_version=version,
                       repaired=True, attempts=self.rules.max_attempts)

    def request(self, game: Game, scene_number: int, action: str | None) -> WriteRequest:
        """The request for scene number ``scene_number`` (0 is the opening) after ``action``."""
        return WriteRequest(self.context(game, scene_number, action), must_end=scene_number + 1 >= game.max_scenes,
                            may_end=scene_number + 1 >= self.rules.min_scenes, tenant=tenant_of(game.place))

    def _show(self, game: Game, written: Written) -> None:
        game.path.append(Shown(scene=written))
        game.status = GameStatus.ENDED if written.is_ending else GameStatus.WAITING

    # --- turns --------------------------------------------------------------------------------
    def check_opening(self, genre: str | None, premise: str | None, block_words: Sequence[str] = ()) -> str | None:
        """The one rule for what a game may start with: a known genre (or none), and a premise (or none: one
        is drawn) that passes the player-text checks with ``block_words`` and fits; the premise as it will be
        stored. Tables checks a start with it before anything is written, and ``start`` again."""
        if genre is not None and genre not in GENRE_IDS:
            raise GameRuleError(f"unknown genre {genre!r}; pick one of: {', '.join(sorted(GENRE_IDS))}")
        if premise is None:
            return None
        premise = check_player_text(premise, self.rules.checks.with_words(block_words))
        if not premise:
            raise GameRuleError("the premise is empty")
        if len(premise) > MAX_PREMISE_CHARS:  # a frontend may declare the limit; the rule lives here
            raise GameRuleError(f"the premise is {len(premise)} characters long; keep it to one sentence of "
                                f"at most {MAX_PREMISE_CHARS}")
        return premise

    async def start(self, place: str, genre: str | None = None, premise: str | None = None,
                    players: Sequence[str] = (), lore: Sequence[str] = (), owner: str | None = None,
                    block_words: Sequence[str] = (), progress: Progress | None = None) -> Game:
        """A new game: genre and premise as given, or drawn from the known premises. ``block_words`` are
        banned in this game on top of the global block list (a server's additions)."""
        premise = self.check_opening(genre, premise, block_words)
        if premise is None:
            pool = [p for p in self.premises if genre is None or p.genre == genre]
            if not pool:
                raise GameRuleError(f"no premise known for genre {genre!r}: give one")
            drawn = self.random.choice(pool)
            genre, premise, lore = drawn.genre, drawn.premise, drawn.lore
        game = Game(id=uuid.uuid4().hex[:12], place=place, players=list(players), genre=genre or "fantasy",
                    premise=premise, lore=list(lore), model_version=self.writers.for_new_game().model_version,
                    max_scenes=self.rules.max_scenes, owner=owner, block_words=list(block_words))
        [opening] = await self.write_checked(game, [self.request(game, 0, None)], progress)
        self._show(game, opening)
        return game

    def _check_waiting(self, game: Game) -> None:
        if game.status == GameStatus.ENDED:
            raise GameRuleError("this story has ended; start a new one")
        if game.status != GameStatus.WAITING:
            raise GameRuleError("the next scene is still being written")

    def requests_for_branches(self, game: Game) -> list[WriteRequest]:
        return [self.request(game, len(game.path), choice) for choice in game.current.scene.choices]

    async def pregenerate(self, game: Game, on_branch: BranchCallback | None = None) -> dict[int, Written]:
        """Write the next scene for every choice of the current scene in advance, one request per branch, each
        as urgent as its choice is close to winning (``engine.votes.branch_urgencies``: the leading choice
        first; re-read whenever a scheduling writer picks its next batch). The branches not taken stay in
        the game (preference data later). ``on_branch`` is awaited with each choice as soon as its branch is
        written (a table saves it)."""
        shown = game.current
        if game.status != GameStatus.WAITING:
            return shown.branches
        todo = [c for c in range(len(shown.scene.choices)) if c not in shown.branches]
        if not todo:
            return shown.branches
        branches = _Branches(shown, tie_seed(game), frozenset(active_players(game)))
        self._branches[game.id] = branches
        requests = self.requests_for_branches(game)
        for choice in todo:
            priority = Priority(urgency=branches.urgency_of(choice))
            request = replace(requests[choice], priority=priority)
            branches.priorities[choice] = priority
            branches.tasks[choice] = asyncio.get_running_loop().create_task(
                self._write_branch(game, choice, request, on_branch))
        try:
            await asyncio.wait(branches.tasks.values())
        except asyncio.CancelledError:  # the scene was retried, undone or ended: its branches are not wanted
            for task in branches.tasks.values():
                task.cancel()
            raise
        if self._branches.get(game.id) is branches:
            del self._branches[game.id]
        return shown.branches

    async def _write_branch(self, game: Game, choice: int, request: WriteRequest,
                            on_branch: BranchCallback | None = None) -> None:
        shown = game.current
        try:
            [written] = await self.write_checked(game, [request])
        except StorytellerBusyError:
            return  # no branch in advance this time; it is written when chosen, if it is chosen
        except Exception:  # a model fault: no branch either (the choice is written, or fails, when taken)
            log.warning("branch %d of game %s could not be written in advance", choice + 1, game.id, exc_info=True)
            return
        shown.branches[choice] = written
        if on_branch is not None:
            try:
                await on_branch(choice)
            except Exception:  # saving it is the caller's business; the branch stands either way
                log.warning("branch %d of game %s was written but not saved", choice + 1, game.id, exc_info=True)

    def start_pregeneration(self, game: Game,
                            on_branch: BranchCallback | None = None) -> asyncio.Task[dict[int, Written]]:
        """Start ``pregenerate`` in the background (call it as soon as a scene is shown)."""
        task = self._pregeneration.get(game.id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self.pregenerate(game, on_branch))
            self._pregeneration[game.id] = task
        return task

    async def _take_branch(self, game: Game, choice: int) -> Written | None:
        """The chosen branch: the others that have not started are dropped (those written, or being written,
        are kept as preference data); the chosen one, if still queued, becomes as urgent as a waiting player."""
        branches = self._branches.get(game.id)
        task = self._pregeneration.pop(game.id, None)
        if branches is not None and branches.shown is game.current:
            for other, priority in branches.priorities.items():
                if other != choice and not priority.started:
                    priority.dropped = True
                    branches.tasks[other].cancel()
            if choice in branches.priorities:
                branches.priorities[choice].urgency = _waiting_now
            mine = branches.tasks.get(choice)
            if mine is not None:
                await asyncio.wait([mine])
        elif task is not None:
            await asyncio.wait([task])
        return game.current.branches.get(choice)

    async def choose(self, game: Game, choice: int, progress: Progress | None = None) -> Game:
        """Take a choice: the pre-generated branch if there is one (waiting only for what is left of its
        writing), else the next scene written now (``progress`` sees its narration grow)."""
        self._check_waiting(game)
        options = game.current.scene.choices
        if not 0 <= choice < len(options):
            raise GameRuleError(f"choice {choice + 1} does not exist; pick 1-{len(options)}")
        written = await self._take_branch(game, choice)
        if written is None:
            game.status = GameStatus.WRITING
            try:
                [written] = await self.write_checked(game, [self.request(game, len(game.path), options[choice])],
                                                     progress)
            except BaseException:
                game.status = GameStatus.WAITING  # nothing was taken: the choice can be made again
                raise
        game.current.chosen = choice
        game.undone.clear()
        self._show(game, written)
        return game

    async def retry(self, game: Game, progress: Progress | None = None) -> Game:
        """Write the current scene again (a new sample); the old one is kept as a rejected version."""
        if game.status == GameStatus.WRITING:
            raise GameRuleError("the next scene is still being written")
        await self._cancel_pregeneration(game)
        scene_number = len(game.path) - 1
        previous = game.path[scene_number - 1] if scene_number > 0 else None
        action = previous.scene.choices[previous.chosen] if previous and previous.chosen is not None else None
        request = self.request(game, scene_number, action)
        current = game.path.pop()
        try:
            [written] = await self.write_checked(game, [request], progress)
        except BaseException:
            game.path.append(current)  # the scene stays as it was
            raise
        self._show(game, written)
        game.current.rejected = [*current.rejected, current.scene]
        return game

    async def undo(self, game: Game) -> Game:
        """Go back to the previous scene; its choice is open again."""
        if len(game.path) < 2:
            raise GameRuleError("there is no earlier scene to go back to")
        await self._cancel_pregeneration(game)
        game.undone.append(game.path.pop())
        game.current.chosen = None
        game.status = GameStatus.WAITING
        return game

    async def end(self, game: Game) -> Game:
        """Stop the story here (no ending scene): the players ended it."""
        await self._cancel_pregeneration(game)
        if game.path:
            game.current.vote_deadline = None
        game.status = GameStatus.ENDED
        return game

    async def close(self) -> None:
        """Cancel every branch still being written (at shutdown)."""
        tasks = list(self._pregeneration.values())
        self._pregeneration.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _cancel_pregeneration(self, game: Game) -> None:
        branches = self._branches.pop(game.id, None)
        if branches is not None:
            for priority in branches.priorities.values():
                priority.dropped = True
        task = self._pregeneration.pop(game.id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
