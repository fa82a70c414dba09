"""Benchmarks of the storyteller (not tests): training speed per preset, generation latency, peak memory.

    .venv/bin/python bench/bench_models.py            # all of it, a few minutes on 2 cores
    .venv/bin/python bench/bench_models.py --quick    # fewer steps and repeats
    .venv/bin/python bench/bench_models.py --only generation --models models:/cyoa-storyteller@champion \
        models:/cyoa-storyteller/2                     # generation of several registered versions side by side

Training presets: tiny, small, base (from scratch), smollm2 (LoRA r=16 over SmolLM2-135M) and smollm2-full
(every weight of SmolLM2 trained), so the LoRA-or-full choice in the README is measured here.

Ratios (batched vs one after another) are measured in the same run; absolute times depend on the machine.
Each training measurement runs in its own process, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_speed(preset_name: str, steps: int) -> dict[str, float]:
    """Tokens per second of real training steps on the bundled dataset (after one warm-up step)."""
    import torch

    from data.build import BuildOptions, build_dataset
    from data.validation import load_stories
    from models.config import preset
    from models.examples import encode, examples_from_steps
    from models.storyteller import collate, token_loss
    from models.training import _optimizer, batches, new_storyteller

    stories, _ = load_stories(ROOT / "data" / "stories")
    build = build_dataset(stories, [], BuildOptions())
    full = preset_name.endswith("-full")
    config = preset(preset_name.removesuffix("-full"), lora_rank=0 if full else None)
    texts = [s.next_scene for s in build.splits["train"]] + [s.scene for s in build.splits["train"]]
    storyteller = new_storyteller(config, texts, build.digest)
    encoded = [encode(storyteller.tokenizer, e, config.max_length, False)
               for e in examples_from_steps(build.splits["train"])]
    plan = batches(encoded, config.batch_size, config.seed, 0)
    optimizer = _optimizer(storyteller.model, config)
    storyteller.model.train()
    tokens, elapsed = 0, 0.0
    for index, ids in enumerate(plan[: steps + 1]):
        batch = collate([encoded[i] for i in ids], storyteller.pad_id, False)
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = token_loss(storyteller.model, batch, False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if index:  # the first step warms up kernels and allocations
            elapsed += time.perf_counter() - started
            tokens += int(batch["attention_mask"].sum())
    unique = {id(p): p for p in storyteller.model.parameters()}.values()
    params = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    return {"tokens_per_second": tokens / elapsed, "parameters": params, "trainable": trainable, "peak_mb": peak_mb(),
            "max_length": config.max_length, "seconds_per_step": elapsed / steps}


def generation_latency(repeats: int, uri: str) -> dict[str, float]:
    """One scene of 120 new tokens; 3 and 4 branches batched vs one after another, in this one process."""
    from cyoa.settings import Settings
    from engine.prompt_format import StoryContext, Turn, render_prompt
    from models.config import Sampling
    from models.pretrained import set_cache_dir
    from models.registry import load_storyteller

    settings = Settings()
    set_cache_dir(settings.bases)
    started = time.perf_counter()
    storyteller = load_storyteller(settings.tracking, uri)
    load_s = time.perf_counter() - started
    # Unconstrained, with min_new_tokens: every variant writes exactly 120 tokens (the grammar could end early).
    sampling = Sampling(max_new_tokens=120, constrained=False)
    context = StoryContext("mecha", "A pilot wakes in a flooded hangar.", ("Aoi-senpai leads the squad.",), "",
                           (Turn("Alarms blare as the sea pours in.", "Climb into the cockpit"),))
    prompts_ids = storyteller.tokenizer(render_prompt(context), add_special_tokens=False)["input_ids"]
    # Force exactly 120 new tokens, so every variant does the same work whatever the model writes.
    original = storyteller.model.generation_config.min_new_tokens
    storyteller.model.generation_config.min_new_tokens = 120

    def timed(n: int, batched: bool) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            if batched:
                storyteller.generate([prompts_ids] * n, sampling, seed=1)
            else:
                for _ in range(n):
                    storyteller.generate([prompts_ids], sampling, seed=1)
            best = min(best, time.perf_counter() - started)
        return best

    one = timed(1, True)
    out = {"load_s": load_s, "one_scene_s": one}
    for n in (3, 4):
        batched, sequential = timed(n, True), timed(n, False)
        out |= {f"{n}_batched_s": batched, f"{n}_sequential_s": sequential, f"{n}_speedup": sequential / batched}
    storyteller.model.generation_config.min_new_tokens = original
    out["peak_mb"] = peak_mb()
    out["model"] = storyteller.version  # type: ignore[assignment]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["training", "generation"])
    parser.add_argument("--child-preset")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base", "smollm2", "smollm2-full"])
    parser.add_argument("--models", nargs="+", default=["models:/cyoa-storyteller@champion"],
                        help="model URIs whose generation to time, each in its own process")
    parser.add_argument("--child-model")
    args = parser.parse_args()
    steps, repeats = (3, 1) if args.quick else (8, 3)
    if args.child_preset:
        print(json.dumps(training_speed(args.child_preset, steps)))
        return
    if args.child_model:
        print(json.dumps(generation_latency(repeats, args.child_model)))
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results: dict[str, object] = {"machine": machine}
    if args.only in (None, "training"):
        for name in args.presets:
            command = [sys.executable, __file__, "--child-preset", name, *(["--quick"] if args.quick else [])]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            results[f"train_{name}"] = json.loads(child.stdout.strip().splitlines()[-1])
    if args.only in (None, "generation"):
        for uri in args.models:
            command = [sys.executable, __file__, "--child-model", uri, *(["--quick"] if args.quick else [])]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            results[f"generation {uri}"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
