"""What reusing a cached answer with its oldest scene cut out costs in quality (not a test).

    .venv/bin/python bench/bench_prompt_reuse.py [--model models:/cyoa-storyteller@champion] [--contexts 48]

The llama.cpp path reuses the last answer's cached state for a story's next prompt even when the window
dropped the oldest scene in between (``models.fast_decoder.reuse``): the cells after the cut move down, but
they were computed with the dropped scene in view, so the model does not see exactly the prompt a fresh
computation would give it. This measures the difference on the test split's stories with two or more scenes
behind them: the real next scene's tokens (the first 64), teacher-forced, scored after the prompt computed
whole, after the prompt reused with the cut, and after the longer prompt that keeps the oldest scene in full.
Prints JSON: mean log-likelihood a token for each, and the prompt tokens each way computed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_TOKENS = 64


def scorer(target: list[int], scores: list[float]) -> Any:
    """A picker that writes ``target`` whatever the logits say and keeps each target token's log-probability."""
    left = list(target)

    def pick(logits: np.ndarray) -> int:
        token = left.pop(0)
        shifted = logits.astype(np.float64) - logits.max()
        scores.append(float(shifted[token] - np.log(np.exp(shifted).sum())))
        return token
    return pick


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models:/cyoa-storyteller@champion")
    parser.add_argument("--contexts", type=int, default=48)
    args = parser.parse_args()

    from cyoa.model_cli import evaluation_data
    from cyoa.settings import Settings
    from engine.prompt_format import render_prompt, render_target
    from models.examples import step_context
    from models.fast_decoder import Job, PrefixCache
    from models.pretrained import set_cache_dir
    from models.writer import ModelWriter

    settings = Settings()
    set_cache_dir(settings.bases)
    writer = asyncio.run(ModelWriter.load(settings.tracking, args.model, settings.decoding()))
    teller: Any = writer.storyteller
    model, tokenizer, stop = teller.model, teller.storyteller.tokenizer, teller.storyteller.end_id

    def ids(text: str) -> list[int]:
        return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]

    steps, _, _ = evaluation_data(settings, None)
    cases = []
    for step in steps:
        context = step_context(step)
        if len(context.path) < 2:
            continue
        following = ids(render_prompt(replace(context, path=context.path[-1:])))  # the oldest scene dropped
        longer = ids(render_prompt(replace(context, path=context.path[-2:])))  # the oldest scene kept
        last = context.path[-1]
        # What the cache holds: the last prompt (the oldest scene and its action) and the answer written to it,
        # up to the end of its narration.
        cached = ids(render_prompt(replace(context, path=(*context.path[-2:-1], replace(last, action=""))))
                     .removesuffix("<|action|>"))
        target = ids(render_target(step.next_scene, step.next_choices, step.ending))[:TARGET_TOKENS]
        if len(longer) + len(target) < model.window:
            cases.append((following, longer, cached, target))
        if len(cases) == args.contexts:
            break

    def score(prompts: list[list[int]], targets: list[list[int]]) -> tuple[float, int]:
        scores: list[float] = []
        computed = model.counters.prompt_tokens
        jobs = [Job(list(p), scorer(t, scores), len(t), -1) for p, t in zip(prompts, targets, strict=True)]
        for job in jobs:
            model.submit(job)
        for job in jobs:
            job.result.result()
        return statistics.mean(scores), model.counters.prompt_tokens - computed

    def fresh() -> None:
        model.prefixes = PrefixCache(model.prefixes.max_bytes, cuts=model.prefixes.cuts)

    targets = [case[3] for case in cases]
    fresh()
    whole, whole_computed = score([case[0] for case in cases], targets)
    fresh()
    kept, kept_computed = score([case[1] for case in cases], targets)
    fresh()
    model.run([case[2] for case in cases], lambda row, logits: stop, 1, stop)  # the answers, cached
    reused = model.counters.reused_tokens
    cut, cut_computed = score([case[0] for case in cases], targets)
    print(json.dumps({
        "model": writer.model_version, "contexts": len(cases), "target_tokens": sum(map(len, targets)),
        "log_likelihood_a_token": {"prompt_whole": round(whole, 4), "reused_with_the_cut": round(cut, 4),
                                   "oldest_scene_kept": round(kept, 4)},
        "prompt_tokens_computed": {"prompt_whole": whole_computed, "reused_with_the_cut": cut_computed,
                                   "oldest_scene_kept": kept_computed},
        "prompt_tokens_reused_with_the_cut": model.counters.reused_tokens - reused,
    }, indent=2))


if __name__ == "__main__":
    main()
