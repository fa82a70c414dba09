"""Benchmark of the engine (not a test): what branch pre-generation buys the players.

    .venv/bin/python bench/bench_engine.py [--rounds 5] [--vote-seconds 3]

- choice made -> next scene ready: written on demand, against pre-generated while the vote was open;
- writing every branch of a scene in one batched call, against one call per branch.
Uses the promoted model (`models:/cyoa-storyteller@champion`); ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def measure(rounds: int, vote_seconds: float) -> dict[str, float]:
    from cyoa.play import bundled_premises
    from cyoa.settings import Settings
    from engine.queue import BatchingWriter
    from engine.turns import EngineRules, StoryEngine
    from models.writer import ModelWriter

    settings = Settings()
    writer = await ModelWriter.load(settings.tracking, settings.model_uri("champion"), settings.decoding())
    # The engine writes a scene's branches as separate requests; the queue batches them, as in the frontends.
    queue = BatchingWriter(writer, max_batch=settings.decoder_slots)
    engine = StoryEngine(queue, EngineRules(max_scenes=50, min_scenes=50), bundled_premises(), seed=7)
    on_demand, pregenerated, batched, sequential = [], [], [], []
    for _ in range(rounds):
        game = await engine.start("bench", "mecha")
        # On demand: the vote closes, then the chosen scene is written.
        started = time.perf_counter()
        await engine.choose(game, 0)
        on_demand.append(time.perf_counter() - started)
        # Pre-generated: every branch is written while the vote is open; the vote closes after vote_seconds.
        engine.start_pregeneration(game)
        await asyncio.sleep(vote_seconds)
        started = time.perf_counter()
        await engine.choose(game, 0)
        pregenerated.append(time.perf_counter() - started)
        # Every branch of one scene: one batched call against one call per branch.
        requests = engine.requests_for_branches(game)
        started = time.perf_counter()
        await writer.write(requests)
        batched.append(time.perf_counter() - started)
        started = time.perf_counter()
        for request in requests:
            await writer.write([request])
        sequential.append(time.perf_counter() - started)
    med = statistics.median
    return {
        "model": writer.model_version,  # type: ignore[dict-item]
        "vote_seconds": vote_seconds,
        "on_demand_s": med(on_demand), "pregenerated_s": med(pregenerated),
        "pregeneration_speedup": med(on_demand) / max(med(pregenerated), 1e-6),
        "branches_batched_s": med(batched), "branches_sequential_s": med(sequential),
        "batching_speedup": med(sequential) / med(batched),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vote-seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.rounds, args.vote_seconds)), indent=2))


if __name__ == "__main__":
    main()
