"""Capacity on a simulated decoder (not a test): the real engine and scheduling queue, the capacity bench's
players, and ``engine.simulation.TimedWriter`` in place of the model, on a virtual clock. A run of minutes
takes a few seconds and gives the same figures for the same seed, so scheduling choices can be compared
over many seeds (the real bench, ``bench_capacity.py``, moves by a few points from run to run). The
simulated decoder's steps take what the real one's took in that bench (``step_ms_by_rows``); ``--speed``
asks what a faster decoder would give.

    .venv/bin/python bench/simulate_capacity.py --games 60 --seeds 10 [--speculative-share 0.5] [--slots 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.queue import BatchingWriter  # noqa: E402
from engine.simulation import LoadFigures, TimedWriter, VirtualClockLoop, measured_step_seconds, play_votes  # noqa: E402
from engine.turns import EngineRules, Premise, StoryEngine  # noqa: E402

PREMISES = [Premise("mecha", "A pilot wakes in a hangar that should be empty.")]


async def simulate(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    writer = TimedWriter(slots=args.slots, tokens=args.tokens, prompt_seconds=args.prompt_seconds / args.speed,
                         step_seconds=lambda rows: measured_step_seconds(rows) / args.speed)
    queue = BatchingWriter(writer, max_batch=args.slots, max_pending=1024, speculative_share=args.speculative_share)
    engine = StoryEngine(queue, EngineRules(max_scenes=100, min_scenes=100), PREMISES, seed=seed)
    figures = LoadFigures()
    rng = random.Random(seed)
    await asyncio.gather(*(play_votes(engine, i, figures, random.Random(rng.random()), window=args.window,
                                      rounds=args.rounds, voters=args.voters) for i in range(args.games)))
    await engine.close()
    await queue.close()
    return {**figures.summary(), "scenes_written": queue.written,
            "decoder_busy": round(writer.busy_seconds / asyncio.get_running_loop().time(), 3)}


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    # Game ids seed each vote's tie-break draw: drawn from the seed too, a run repeats exactly.
    ids = random.Random(seed)
    uuid.uuid4 = lambda: uuid.UUID(int=ids.getrandbits(128))
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:  # what is left running is cancelled after
        return runner.run(simulate(args, seed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games", type=int, default=60)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--voters", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=160, help="tokens a scene (the champion's: ~160)")
    parser.add_argument("--prompt-seconds", type=float, default=0.1, help="decoder time a prompt takes")
    parser.add_argument("--speculative-share", type=float, default=0.5)
    parser.add_argument("--speed", type=float, default=1.0, help="the decoder this many times as fast")
    args = parser.parse_args()
    for name in ("games", "rounds", "voters", "seeds", "slots", "tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.speed <= 0 or args.window <= 0:
        parser.error("--speed and --window must be above 0")
    runs = [run_seed(args, seed) for seed in range(args.seeds)]
    ready = [run["winning_branch_ready"] for run in runs]
    served = [run["games_every_winner_ready"] for run in runs]
    print(json.dumps({
        "games": args.games, "seeds": args.seeds, "slots": args.slots, "speculative_share": args.speculative_share,
        "winning_branch_ready": {"mean": round(statistics.mean(ready), 3), "min": min(ready), "max": max(ready)},
        "games_every_winner_ready": {"mean": round(statistics.mean(served), 1), "min": min(served),
                                     "max": max(served)},
        "close_to_next_scene_p95_s": round(statistics.mean(run["close_to_next_scene_s"]["p95"] for run in runs), 2),
        "scenes_written": round(statistics.mean(run["scenes_written"] for run in runs)),
        "decoder_busy": round(statistics.mean(run["decoder_busy"] for run in runs), 3),
        "missed_winners": dict(sum((Counter(run["missed_winners"]) for run in runs), Counter()).most_common()),
    }, indent=2))


if __name__ == "__main__":
    main()
