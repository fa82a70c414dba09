"""Choosing the next token from a row of logits, outside transformers (the llama.cpp path).

The same steps, in the same order, as transformers' ``generate(do_sample=True)`` with our settings:
repetition penalty over every token seen (prompt and answer), the grammar's mask, temperature, nucleus (top-p),
then one draw. Pure numpy; the caller owns the random generator, so a seed replays a scene.
"""

from __future__ import annotations

import numpy as np

from models.config import Sampling


def penalise_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty as transformers applies it: a seen token's positive logit is divided by the
    penalty, a negative one multiplied."""
    if penalty == 1.0 or seen.size == 0:
        return logits
    ids = np.unique(seen)
    ids = ids[ids < logits.shape[0]]
    values = logits[ids]
    logits[ids] = np.where(values < 0, values * penalty, values / penalty)
    return logits


def nucleus(probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of most likely tokens whose probability reaches ``top_p`` (at least one), as (ids,
    renormalised probabilities). transformers drops a token when the tokens above it already hold ``top_p``;
    so does this, sorting only the tokens above a probability floor first, the highest floor first (a sort of
    all 49 k costs milliseconds a token, of the ~1-5 k above 1e-6 a few hundred microseconds, of the few
    dozen above 1e-3 a few): every token below them comes after them in the order, so when they reach
    ``top_p`` the answer is the same as a full sort's."""
    if top_p >= 1.0:
        ids = np.flatnonzero(probs)
        return ids, probs[ids] / probs[ids].sum()
    for floor in _CANDIDATE_FLOORS:
        candidates = np.flatnonzero(probs > floor)
        order = candidates[np.argsort(-probs[candidates], kind="stable")]
        cumulative = np.cumsum(probs[order])
        if cumulative.size and cumulative[-1] >= top_p:
            break
    kept = order[(cumulative - probs[order]) < top_p]
    kept = kept if kept.size else order[:1]
    return kept, probs[kept] / probs[kept].sum()


# Tokens less likely than a floor are sorted only when those above it cannot reach top_p.
_CANDIDATE_FLOORS = (1e-3, 1e-6, -1.0)


def next_token(logits: np.ndarray, seen: np.ndarray, sampling: Sampling, rng: np.random.Generator,
               keep: np.ndarray | None = None) -> int:
    """One sampled token id. ``keep``: the grammar's mask (``None`` when decoding is unconstrained)."""
    # In the logits' own precision: float32 from both decoding paths, as transformers computes it too.
    scores = penalise_repeats(logits.copy(), seen, sampling.repetition_penalty)
    if keep is not None:
        scores[~keep[: scores.shape[0]]] = -np.inf
    scores /= max(sampling.temperature, 1e-5)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    ids, weights = nucleus(probs, sampling.top_p)
    return int(ids[rng.choice(ids.shape[0], p=weights)]) if ids.shape[0] > 1 else int(ids[0])
