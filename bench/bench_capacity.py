"""Load benchmark (not a test): how many games one machine keeps fully served with the real champion.

    .venv/bin/python bench/bench_capacity.py --games 60 --window 60 --rounds 3 [--voters 3]

``--games`` games run at once through the real engine and scheduling queue, their starts spread over the
first window. Each shown scene opens a vote of ``--window`` seconds; simulated players vote at random
moments (one choice is favoured, so a leader usually emerges, and sometimes changes late); at the close the
winner is taken (``engine.simulation.play_votes``; ``bench/simulate_capacity.py`` runs the same players on
a simulated decoder). Reported: the share of closes whose winning branch was already written, the games
whose every close found it written, the time from the close to the next scene shown (median, p95 and the
longest), the share written on demand, where the winners not ready stood, the branches shed, batch sizes, the
decoder's time (prompts, steps, picking tokens) and the process's peak memory. Wall-clock time is real: the
run lasts about ``window * (rounds + 1)`` seconds.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cyoa.play import bundled_premises
    from cyoa.settings import Settings
    from engine.queue import BatchingWriter
    from engine.simulation import LoadFigures, play_votes
    from engine.turns import EngineRules, StoryEngine
    from models.pretrained import set_cache_dir
    from models.writer import ModelWriter

    settings = Settings()
    set_cache_dir(settings.bases)
    model = await ModelWriter.load(settings.tracking, args.model, settings.decoding())
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue = BatchingWriter(model, max_batch=settings.decoder_slots, max_pending=1024,
                           speculative_share=args.speculative_share)
    engine = StoryEngine(queue, EngineRules(max_scenes=100, min_scenes=100), bundled_premises(), seed=7)
    figures = LoadFigures()
    rng = random.Random(1234)
    started, loop_cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(play_votes(engine, i, figures, random.Random(rng.random()), window=args.window,
                                      rounds=args.rounds, voters=args.voters) for i in range(args.games)))
    wall = time.perf_counter() - started
    # The event loop's own CPU (the engine, the queue, building prompts): on 2 cores, what it takes is taken
    # from the decoder's threads, whose every step waits for the slower of the two.
    cpu = {"event_loop": round(time.thread_time() - loop_cpu, 1),
           "process": round(time.process_time() - process_cpu, 1)}
    await engine.close()
    await queue.close()
    return {
        "games": args.games, "window_s": args.window, "rounds": args.rounds, "voters": args.voters,
        "path": model.decoder, "model": model.model_version, "slots": settings.decoder_slots,
        "speculative_share": args.speculative_share,
        **figures.summary(),
        "model_calls": len(queue.batches), "mean_batch": round(statistics.mean(queue.batches), 2),
        "output_checks": engine.stats.as_dict(),
        "branches_shed": queue.shed,
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
    parser.add_argument("--speculative-share", type=float, default=0.5,
                        help="busy share of the slots below which a branch not leading its vote may start")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
