"""Side by side on the test split: registered versions, and SmolLM2 as it comes (no fine-tuning).

    .venv/bin/python bench/compare_models.py --models models:/cyoa-storyteller@champion \\
        models:/cyoa-storyteller/2 --base smollm2 --samples 64

Every model gets the same steps, the same seed and the engine's constrained decoding with its own sampling
preset. The untrained base is SmolLM2 with the story markers added (their rows start at the mean embedding)
and the smollm2 preset's sampling: what the engine would get from the base without fine-tuning. Prints JSON
(metrics, and the first three samples verbatim) on stdout; each model runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def evaluate_one(what: str, samples: int, seed: int) -> dict[str, Any]:
    from cyoa.model_cli import evaluation_data
    from cyoa.settings import Settings
    from models.config import preset
    from models.evaluation import EvalOptions, MiniLM, evaluate
    from models.pretrained import set_cache_dir
    from models.registry import load_storyteller
    from models.training import new_storyteller

    settings = Settings()
    set_cache_dir(settings.bases)
    steps, label, _ = evaluation_data(settings, None)
    started = time.perf_counter()
    if what.startswith("base:"):
        storyteller = new_storyteller(preset(what.removeprefix("base:"), lora_rank=0), [], None)
        storyteller.model.eval()
        storyteller.version = f"{what} (not fine-tuned)"
    else:
        storyteller = load_storyteller(settings.tracking, what)
    report = evaluate(storyteller, steps, label, EvalOptions(samples=samples, seed=seed), MiniLM())
    shown = [{"id": s.id, "action": s.action, "generated": s.generated} for s in report.samples[:3]]
    return {"model": report.model, "seconds": time.perf_counter() - started, "metrics": report.metrics,
            "samples": shown}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=["models:/cyoa-storyteller@champion"])
    parser.add_argument("--base", action="append", default=[], help="a named base to evaluate untrained")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(evaluate_one(args.child, args.samples, args.seed)))
        return
    results = []
    for what in [*args.models, *(f"base:{name}" for name in args.base)]:
        command = [sys.executable, __file__, "--child", what, "--samples", str(args.samples), "--seed", str(args.seed)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=2), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
