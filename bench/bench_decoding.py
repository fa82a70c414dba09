"""Benchmark of the decoding paths (not a test): transformers' ``generate`` against llama.cpp, same weights.

    .venv/bin/python bench/bench_decoding.py [--model models:/cyoa-storyteller@champion] [--scenes 4]

Each path runs in its own process (so peak memory is that path's alone) on the same contexts, seeds and
sampling preset with the grammar on, 120 new tokens at most: a cold scene (one game), 4 and 8 batched, the
time to the first streamed words through the engine, and the process's peak memory with the model loaded.
Prints JSON; the ratios in the README come from one run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(uri: str, kind: str, weights: str, scenes: int) -> dict[str, Any]:
    from cyoa.model_cli import evaluation_data
    from cyoa.settings import Settings
    from engine.turns import EngineRules, StoryEngine
    from models.examples import step_context
    from models.fast_job import Decoding
    from models.pretrained import set_cache_dir
    from models.writer import ModelWriter

    settings = Settings()
    set_cache_dir(settings.bases)
    before = peak_mb()
    started = time.perf_counter()
    writer = asyncio.run(ModelWriter.load(settings.tracking, uri,
                                          Decoding(kind, weights, 8, settings.home / "gguf")))  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    loaded = peak_mb()
    writer.sampling = dataclasses.replace(writer.sampling, max_new_tokens=120)
    steps, _, _ = evaluation_data(settings, None)
    contexts = [step_context(step) for step in steps[: 8 * scenes]]
    teller: Any = writer.storyteller

    tokenizer = getattr(teller, "storyteller", teller).tokenizer

    def timed(batch: list[Any], seed: int) -> tuple[float, int]:
        begun = time.perf_counter()
        answers = teller.write(batch, writer.sampling, seed)
        seconds = time.perf_counter() - begun
        return seconds, sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)

    out: dict[str, Any] = {"path": writer.decoder, "model": writer.model_version, "load_s": load_s,
                           "weights": getattr(teller, "gguf_note", "") or "float32 (transformers)"}
    for size in (1, 4, 8):
        runs = [timed(contexts[i * size:(i + 1) * size], seed=i) for i in range(scenes)]
        seconds = statistics.median(r[0] for r in runs)
        tokens = statistics.median(r[1] for r in runs)
        out[f"batch_{size}"] = {"seconds": round(seconds, 2), "tokens": tokens,
                                "scenes_per_minute": round(60 * size / seconds, 1),
                                "ms_per_token_per_scene": round(1000 * seconds / max(tokens / size, 1), 1)}

    def stopwatch() -> tuple[list[float], Any]:
        first: list[float] = []
        begun = time.perf_counter()

        def progress(text: str) -> None:
            if text and not first:
                first.append(time.perf_counter() - begun)
        return first, progress

    async def first_words() -> dict[str, float]:
        """Request to first streamed words: an opening; a scene chosen on demand three scenes in (its prompt
        never seen); a retry of it (its prompt seen a moment ago)."""
        engine = StoryEngine(writer, EngineRules(min_scenes=20, max_scenes=20))
        times: dict[str, list[float]] = {"opening": [], "on_demand": [], "retry": []}
        for _ in range(3):
            first, progress = stopwatch()
            game = await engine.start("bench", "mecha", "A rookie pilot defends a drowned city from the sea's "
                                      "machines.", progress=progress)
            times["opening"].append(first[0])
            for _ in range(2):
                await engine.choose(game, 0)
            first, progress = stopwatch()
            await engine.choose(game, 0, progress)
            times["on_demand"].append(first[0])
            first, progress = stopwatch()
            await engine.retry(game, progress)
            times["retry"].append(first[0])
        return {what: round(statistics.median(values), 3) for what, values in times.items()}

    out["first_words_s"] = asyncio.run(first_words())
    out["peak_memory_mb"] = {"before_load": round(before), "model_loaded": round(loaded), "after": round(peak_mb())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models:/cyoa-storyteller@champion")
    parser.add_argument("--scenes", type=int, default=3, help="runs per batch size (medians are reported)")
    parser.add_argument("--paths", nargs="*", default=["transformers", "llama.cpp:auto"],
                        help="decoding paths to measure, each in its own process: transformers or llama.cpp:<weights>")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        kind, _, weights = args.child.partition(":")
        print(json.dumps(measure(args.model, kind, weights or "auto", args.scenes)))
        return
    results = []
    for path in args.paths:
        child = subprocess.run([sys.executable, __file__, "--child", path, "--model", args.model,
                                "--scenes", str(args.scenes)], capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"{path} failed:\n{child.stderr[-3000:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=2), file=sys.stderr, flush=True)
    if len(results) >= 2:
        base, fast = results[0], results[-1]
        # A token at a time (the prompt's cost included): the paths sample different scenes of different
        # lengths from the same contexts, so whole-scene seconds would compare unequal amounts of writing.
        def speedup(size: int) -> float:
            key = "ms_per_token_per_scene"
            return round(base[f"batch_{size}"][key] / fast[f"batch_{size}"][key], 2)
        results.append({"speedup_cold_scene_per_token": speedup(1), "speedup_batch_8_per_token": speedup(8)})
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
