"""Load benchmark (not a test): how many games one machine keeps fully served with the real champion.

    .venv/bin/python bench/bench_capacity.py --games 60 --window 60 --rounds 3 [--voters 3]

``--games`` games run at once through the real engine and scheduling queue, their starts spread over the
first window. Each shown scene opens a vote of ``--window`` seconds; simulated players vote at random
moments (one choice is favoured, so a leader usually emerges, and sometimes changes late); at the close the
winner is taken. Reported: the share of closes whose winning branch was already written, the games whose
every close found it written, the time from the close to the next scene shown (median and p95), the share
written on demand, where the winners not ready stood, the branches shed or stopped for a more urgent one,
batch sizes, the decoder's time (prompts, steps, picking tokens) and the process's peak memory. Wall-clock
time is real: the run lasts about ``window * (rounds + 1)`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Figures:
    ready: list[bool] = field(default_factory=list)
    games_served: int = 0  # games whose every close found the winning branch ready
    close_to_scene: list[float] = field(default_factory=list)
    openings: list[float] = field(default_factory=list)
    missed: Counter[str] = field(default_factory=Counter)  # where a winner not ready at its close stood
    errors: list[str] = field(default_factory=list)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else float("nan")


async def play(engine: Any, index: int, args: argparse.Namespace, figures: Figures, rng: random.Random) -> None:
    from engine.votes import VoteRules, cast, close_vote, open_vote, standings, tie_seed

    rules = VoteRules(window_seconds=args.window, quorum=1)
    await asyncio.sleep(rng.uniform(0, args.window))  # games start at different moments, as on a real server
    begun = time.perf_counter()
    game = await engine.start(f"bench-{index}")  # a premise drawn from the bundled stories
    figures.openings.append(time.perf_counter() - begun)
    served = True
    for _ in range(args.rounds):
        shown_at = time.perf_counter()
        open_vote(game, rules, datetime.now(UTC))
        engine.start_pregeneration(game)
        options = len(game.current.scene.choices)
        weights = [rng.random() ** 2 for _ in range(options)]
        moments = sorted(rng.uniform(0, args.window) for _ in range(args.voters))
        leader, led_since = standings(game.current, tie_seed(game))[0], 0.0  # the choice that would win now
        for voter, moment in enumerate(moments):
            await asyncio.sleep(max(0.0, shown_at + moment - time.perf_counter()))
            cast(game, f"player-{voter}", rng.choices(range(options), weights)[0], datetime.now(UTC))
            if standings(game.current, tie_seed(game))[0] != leader:
                leader, led_since = standings(game.current, tie_seed(game))[0], moment
        await asyncio.sleep(max(0.0, shown_at + args.window - time.perf_counter()))
        result = close_vote(game, rules, datetime.now(UTC), tie_seed(game))
        choice = result.choice if result.choice is not None else 0
        figures.ready.append(choice in game.current.branches)
        if not figures.ready[-1]:
            figures.missed[missed_state(engine, game, choice, args.window - led_since)] += 1
        served = served and figures.ready[-1]
        closed = time.perf_counter()
        try:
            await engine.choose(game, choice)
        except Exception as exc:  # a benchmark reports failures rather than stopping
            figures.errors.append(f"{type(exc).__name__}: {exc}")
            return
        figures.close_to_scene.append(time.perf_counter() - closed)
    figures.games_served += served


def missed_state(engine: Any, game: Any, choice: int, led_for: float) -> str:
    """Where a winner not ready at its close stood: being written or still queued, and how long it had led
    the vote (a choice that took the lead in the last seconds had no time to be written as the leader)."""
    branches = engine._branches.get(game.id)  # the bench looks inside; no caller needs this
    priority = branches.priorities.get(choice) if branches is not None else None
    state = "not_requested" if priority is None else "being_written" if priority.started else "queued"
    span = "under 10 s" if led_for < 10 else "10-30 s" if led_for < 30 else "over 30 s"
    return f"{state}, led {span}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cyoa.play import bundled_premises
    from cyoa.settings import Settings
    from engine.queue import BatchingWriter
    from engine.turns import EngineRules, StoryEngine
    from models.pretrained import set_cache_dir
    from models.writer import ModelWriter

    settings = Settings()
    set_cache_dir(settings.bases)
    model = await ModelWriter.load(settings.tracking, args.model, settings.decoding())
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue = BatchingWriter(model, max_batch=settings.decoder_slots, max_pending=1024)
    engine = StoryEngine(queue, EngineRules(max_scenes=100, min_scenes=100), bundled_premises(), seed=7)
    figures = Figures()
    rng = random.Random(1234)
    started, loop_cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(play(engine, i, args, figures, random.Random(rng.random())) for i in range(args.games)))
    wall = time.perf_counter() - started
    # The event loop's own CPU (the engine, the queue, building prompts): on 2 cores, what it takes is taken
    # from the decoder's threads, whose every step waits for the slower of the two.
    cpu = {"event_loop": round(time.thread_time() - loop_cpu, 1),
           "process": round(time.process_time() - process_cpu, 1)}
    await engine.close()
    await queue.close()
    closes = len(figures.ready)
    return {
        "games": args.games, "window_s": args.window, "rounds": args.rounds, "voters": args.voters,
        "path": model.decoder, "model": model.model_version, "slots": settings.decoder_slots,
        "closes": closes,
        "winning_branch_ready": round(sum(figures.ready) / max(closes, 1), 3),
        "games_every_winner_ready": figures.games_served,
        "written_on_demand": round(1 - sum(figures.ready) / max(closes, 1), 3),
        "close_to_next_scene_s": {"median": round(statistics.median(figures.close_to_scene), 3)
                                  if figures.close_to_scene else None,
                                  "p95": round(p95(figures.close_to_scene), 3)},
        "opening_s": {"median": round(statistics.median(figures.openings), 2), "p95": round(p95(figures.openings), 2)},
        "model_calls": len(queue.batches), "mean_batch": round(statistics.mean(queue.batches), 2),
        "missed_winners": dict(figures.missed.most_common()),
        "output_checks": engine.stats.as_dict(),
        "branches_shed": queue.shed, "losers_preempted": queue.preempted, "errors": figures.errors[:5],
        "scenes_written": sum(queue.batches), "wall_s": round(wall, 1), "cpu_s": cpu,
        "peak_memory_mb": {"model_loaded": round(loaded_mb),
                           "end": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)},
        **decoder_figures(model),
    }


def decoder_figures(model: Any) -> dict[str, Any]:
    """Where the llama.cpp path's time went, and how much of the prompts its cache saved."""
    decoder = getattr(model.storyteller, "model", None)
    if decoder is None or not hasattr(decoder, "counters"):
        return {}
    cache = decoder.prefixes
    return {"decoder": decoder.counters.summary(), "step_ms_by_rows": decoder.counters.step_ms_by_rows(),
            "prompt_cache": {"entries": len(cache.entries), "mb": round(cache.size / 2**20),
                             "limit_mb": round(cache.max_bytes / 2**20), "dropped_branches": cache.dropped_branches}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models:/cyoa-storyteller@champion")
    parser.add_argument("--games", type=int, default=60)
    parser.add_argument("--window", type=float, default=60.0, help="seconds a vote stays open")
    parser.add_argument("--rounds", type=int, default=3, help="votes per game")
    parser.add_argument("--voters", type=int, default=3)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
