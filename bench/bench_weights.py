"""Benchmark of the GGUF weight types (not a test): what each costs a decoding step and what it loses in
likelihood, on the same storyteller.

    .venv/bin/python bench/bench_weights.py [--model models:/cyoa-storyteller@champion] [--weights bf16 q8_0 f32]

For each weight type (converted as the writer converts it, cached in $CYOA_HOME/gguf):
- the file's size;
- one decoding step of 16 sequences at 300 and 600 tokens of context, prompt tokens a second, and a lone
  scene (a 400-token prompt, then 120 tokens one at a time: the cold path) (``llama_decode`` alone, random
  tokens; medians, the types' rounds interleaved so that the machine's drift falls on every type alike);
- the gap of its log-probabilities from transformers' for the same weights over real scenes (mean, max);
- the test split's next scenes teacher-forced (their first 64 tokens after the real prompt): nats a token.
Also the llama.cpp build's CPU features (``native_bf16``: whether ``CYOA_GGUF_WEIGHTS=auto`` picks bf16).
Prints JSON; the README's weight-type figures come from one run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLOTS = 16
CONTEXTS = (300, 600)


def step_timing(model: Any, rng: np.random.Generator, steps: int) -> dict[str, float]:
    """Median ms of one step of ``SLOTS`` sequences at each context length, and prompt tokens a second."""
    out: dict[str, float] = {}
    for length in CONTEXTS:
        model.lib.llama_memory_clear(model.memory, True)
        started = time.perf_counter()
        for slot in range(SLOTS):
            tokens = rng.integers(100, 40000, length).tolist()
            model._decode([(t, p, slot, p == length - 1) for p, t in enumerate(tokens)])
        out[f"prompt_tokens_a_s_{length}"] = SLOTS * length / (time.perf_counter() - started)
        times = []
        for k in range(steps):
            begun = time.perf_counter()
            model._decode([(int(rng.integers(100, 40000)), length + k, slot, True) for slot in range(SLOTS)])
            times.append(time.perf_counter() - begun)
        out[f"step_ms_{length}"] = 1000 * statistics.median(times)
    # A lone scene, the cold path: one prompt of 400 tokens, then 120 tokens one step at a time.
    model.lib.llama_memory_clear(model.memory, True)
    tokens = rng.integers(100, 40000, 520).tolist()
    started = time.perf_counter()
    model._decode([(t, p, 0, p == 399) for p, t in enumerate(tokens[:400])])
    for position in range(400, 520):
        model._decode([(tokens[position], position, 0, True)])
        model._logits(0)
    out["lone_scene_s"] = time.perf_counter() - started
    return out


def transformers_log_probs(teller: Any, prompt: list[int], target: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = teller.model(torch.tensor([prompt + target])).logits[0].double()
    rows = torch.log_softmax(logits, -1)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(target) - 1)
    return [float(x) for x in rows[positions, torch.tensor(target)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/cyoa-storyteller@champion")
    parser.add_argument("--weights", nargs="+", default=["bf16", "q8_0", "f32"])
    parser.add_argument("--stories", type=int, default=160, help="test-split scenes to score")
    parser.add_argument("--parity", type=int, default=8, help="of those, scenes compared with transformers")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=30, help="decoding steps timed a round and context")
    args = parser.parse_args()

    from cyoa.model_cli import evaluation_data
    from cyoa.settings import Settings
    from engine.prompt_format import render_prompt, render_target
    from models.examples import step_context
    from models.fast_decoder import LlamaCppModel, native_bf16
    from models.fast_job import Decoding, converted
    from models.pretrained import set_cache_dir
    from models.writer import ModelWriter

    settings = Settings()
    set_cache_dir(settings.bases)
    writer = asyncio.run(ModelWriter.load(settings.tracking, args.model, Decoding("transformers")))
    teller: Any = writer.storyteller
    tokenizer = teller.tokenizer

    def ids(text: str) -> list[int]:
        return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]

    steps, _, _ = evaluation_data(settings, None)
    cases: list[tuple[list[int], list[int]]] = []
    for step in steps:
        prompt = ids(render_prompt(step_context(step)))
        target = ids(render_target(step.next_scene, step.next_choices, step.ending))[:64]
        if len(prompt) + len(target) < teller.window:
            cases.append((prompt, target))
        if len(cases) == args.stories:
            break
    reference = [transformers_log_probs(teller, p, t) for p, t in cases[: args.parity]]

    window = max(teller.window + 64, CONTEXTS[-1] + args.steps + 1)
    models: dict[str, Any] = {}
    report: dict[str, Any] = {"model": teller.version, "native_bf16": native_bf16(), "scored_tokens": 0}
    for weights in args.weights:
        path, note = converted(teller, Decoding("llama.cpp", weights, SLOTS, settings.home / "gguf"))
        models[weights] = LlamaCppModel(path, slots=SLOTS, window=window)
        report[weights] = {"file": note, "file_mb": round(path.stat().st_size / 1e6)}
    for weights, model in models.items():
        scored = [model.log_probs(p + t, start=len(p)) for p, t in cases]  # the targets' tokens, teacher-forced
        gaps = np.abs(np.concatenate([mine - np.array(ref) for mine, ref in zip(scored, reference, strict=False)]))
        scores = [float(x) for row in scored for x in row]
        report["scored_tokens"] = len(scores)
        report[weights].update(parity_gap_mean=round(float(gaps.mean()), 4),
                               parity_gap_max=round(float(gaps.max()), 4),
                               test_nats_a_token=round(statistics.mean(scores), 4))
    rng = np.random.default_rng(0)
    rounds: dict[str, list[dict[str, float]]] = {w: [] for w in models}
    for _ in range(args.rounds):
        for weights, model in models.items():
            rounds[weights].append(step_timing(model, rng, args.steps))
    for weights, measured in rounds.items():
        for key in measured[0]:
            report[weights][key] = round(statistics.median(m[key] for m in measured), 2 if key.endswith("_s") else 1)
    first = args.weights[0]
    report["step_ratio_600"] = {w: round(report[w]["step_ms_600"] / report[first]["step_ms_600"], 2)
                                for w in args.weights}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
