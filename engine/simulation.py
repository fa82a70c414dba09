"""Load on the real engine and queue: simulated players voting in timed windows, and a simulated decoder.

``play_votes`` drives one game as players would (a vote a scene, ballots at random moments, the winner taken
at the close) and records whether each close found its winning branch written; ``bench/bench_capacity.py``
runs it against the real champion. ``TimedWriter`` is a fake continuously batching decoder whose steps take
the time a real one's do (by the number of sequences), and ``VirtualClockLoop`` an event loop whose clock
jumps to the next timer whenever nothing is ready: together they run minutes of load on the real scheduling
in a few seconds, with the same result for the same seeds and game ids (ids seed the votes' tie-breaks).
``bench/simulate_capacity.py`` and the tests of the scheduling under load use them. Nothing run under the
virtual clock may wait on real I/O or threads.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.fakes import FakeWriter
from engine.game import Game
from engine.ports import WriteRequest, WrittenScene
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote, standings, tie_seed

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def measured_step_seconds(rows: int) -> float:
    """A step of the champion on the llama.cpp path on 2 cores, by sequences in it: a line through the
    capacity bench's ``step_ms_by_rows`` (31 ms for 8, 50 for 16; it says 14 for one sequence, which took 7,
    but steps of a few sequences are rare under load)."""
    return 0.012 + 0.0024 * rows


class TimedWriter(FakeWriter):
    """A fake continuously batching decoder on the event loop's clock: up to ``slots_in_flight`` sequences
    at once, each ``tokens`` long; a step advances every sequence by one token and takes
    ``step_seconds(sequences)``, and a sequence joining first costs ``prompt_seconds`` of the decoder's time
    (its prompt). A cancelled call leaves at once. Answers are ``FakeWriter``'s."""

    def __init__(self, slots: int = 16, tokens: int = 160,
                 step_seconds: Callable[[int], float] = measured_step_seconds, prompt_seconds: float = 0.1) -> None:
        super().__init__()
        self.slots_in_flight = slots
        self.tokens = tokens
        self.step_seconds = step_seconds
        self.prompt_seconds = prompt_seconds
        self.steps = 0
        self.busy_seconds = 0.0
        self._rows: dict[asyncio.Future[None], int] = {}  # each sequence being written: tokens left
        self._joining = 0
        self._decoder: asyncio.Task[None] | None = None

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        loop = asyncio.get_running_loop()
        rows = [loop.create_future() for _ in requests]
        for row in rows:
            self._rows[row] = self.tokens
        self._joining += len(rows)
        if self._decoder is None or self._decoder.done():
            self._decoder = loop.create_task(self._run())
        try:
            await asyncio.gather(*rows)
        finally:
            for row in rows:
                self._rows.pop(row, None)
        return await super().write(requests)

    async def _run(self) -> None:
        while self._rows:
            joining, self._joining = self._joining, 0
            seconds = joining * self.prompt_seconds + self.step_seconds(len(self._rows))
            await asyncio.sleep(seconds)
            self.steps += 1
            self.busy_seconds += seconds
            for row in list(self._rows):
                self._rows[row] -= 1
                if self._rows[row] <= 0:
                    del self._rows[row]
                    if not row.done():
                        row.set_result(None)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still while callbacks are ready and jumps to the next timer when none
    is: ``asyncio.sleep`` takes no real time, and the same work runs the same way every time."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual = 0.0

    def time(self) -> float:
        return self._virtual

    def _run_once(self) -> None:
        ready, scheduled = getattr(self, "_ready"), getattr(self, "_scheduled")  # noqa: B009 (private, typed Any)
        if not ready and scheduled:
            self._virtual = max(self._virtual, scheduled[0].when())
        getattr(super(), "_run_once")()  # noqa: B009


@dataclass
class LoadFigures:
    ready: list[bool] = field(default_factory=list)  # each close: was its winning branch written?
    games_served: int = 0  # games whose every close found the winning branch ready
    close_to_scene: list[float] = field(default_factory=list)
    openings: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missed: Counter[str] = field(default_factory=Counter)  # where a winner not ready at its close stood

    def summary(self) -> dict[str, Any]:
        closes = len(self.ready)
        return {
            "closes": closes,
            "winning_branch_ready": round(sum(self.ready) / max(closes, 1), 3),
            "games_every_winner_ready": self.games_served,
            "written_on_demand": round(1 - sum(self.ready) / max(closes, 1), 3),
            "close_to_next_scene_s": {"median": _round(_median(self.close_to_scene), 3),
                                      "p95": _round(_p95(self.close_to_scene), 3),
                                      "max": _round(max(self.close_to_scene, default=None), 3)},
            "opening_s": {"median": _round(_median(self.openings), 2), "p95": _round(_p95(self.openings), 2)},
            "missed_winners": dict(self.missed.most_common()),
            "errors": self.errors[:5],
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p95(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def play_votes(engine: StoryEngine, index: int, figures: LoadFigures, rng: random.Random, *,
                     window: float, rounds: int, voters: int) -> None:
    """One game: it starts at a random moment of the first window, then ``rounds`` votes of ``window`` s,
    ``voters`` players voting at random moments (one choice favoured a scene, so a leader usually emerges and
    sometimes changes late); at each close the winner is taken and whether its branch was ready recorded."""
    loop = asyncio.get_running_loop()
    rules = VoteRules(window_seconds=window, quorum=1)
    await asyncio.sleep(rng.uniform(0, window))
    begun = loop.time()
    game = await engine.start(f"load-{index}")  # a premise drawn from the engine's
    figures.openings.append(loop.time() - begun)
    served = True
    for _ in range(rounds):
        shown_at = loop.time()
        open_vote(game, rules, EPOCH + timedelta(seconds=shown_at))
        engine.start_pregeneration(game)
        options = len(game.current.scene.choices)
        weights = [rng.random() ** 2 for _ in range(options)]
        moments = sorted(rng.uniform(0, window) for _ in range(voters))
        leader, led_since = standings(game.current, tie_seed(game))[0], 0.0  # the choice that would win now
        for voter, moment in enumerate(moments):
            await asyncio.sleep(max(0.0, shown_at + moment - loop.time()))
            cast(game, f"player-{voter}", rng.choices(range(options), weights)[0],
                 EPOCH + timedelta(seconds=loop.time()))
            now_leading = standings(game.current, tie_seed(game))[0]
            if now_leading != leader:
                leader, led_since = now_leading, moment
        await asyncio.sleep(max(0.0, shown_at + window - loop.time()))
        result = close_vote(game, rules, EPOCH + timedelta(seconds=loop.time()), tie_seed(game))
        choice = result.choice if result.choice is not None else 0
        figures.ready.append(choice in game.current.branches)
        if not figures.ready[-1]:
            figures.missed[missed_state(engine, game, choice, window - led_since)] += 1
        served = served and figures.ready[-1]
        closed = loop.time()
        try:
            await engine.choose(game, choice)
        except Exception as exc:  # a load run reports failures rather than stopping
            figures.errors.append(f"{type(exc).__name__}: {exc}")
            return
        figures.close_to_scene.append(loop.time() - closed)
    figures.games_served += served


def missed_state(engine: StoryEngine, game: Game, choice: int, led_for: float) -> str:
    """Where a winner not ready at its close stood: being written or still queued, and how long it had led
    the vote (a choice that took the lead in the last seconds had no time to be written as the leader)."""
    branches = engine._branches.get(game.id)  # a load report looks inside; no caller needs this
    priority = branches.priorities.get(choice) if branches is not None else None
    state = "not_requested" if priority is None else "being_written" if priority.started else "queued"
    span = "under 10 s" if led_for < 10 else "10-30 s" if led_for < 30 else "over 30 s"
    return f"{state}, led {span}"
