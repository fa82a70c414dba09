"""A few steps of direct preference optimisation (DPO; Rafailov et al., 2023) on the harvested preference pairs.

DPO needs no reward model: with a frozen copy of the model as the reference, it raises the log-probability of
the answer the players preferred relative to the reference, and lowers the other's, by minimising
``-log sigmoid(beta * ((log p(chosen) - log p_ref(chosen)) - (log p(rejected) - log p_ref(rejected))))``.
``beta`` says how far the policy may move from the reference. Only the answers are scored, never the prompt.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional
from transformers import PreTrainedModel

from data.feedback import PreferencePair
from engine.errors import TrainingError
from models.examples import Encoded
from models.storyteller import Storyteller, collate, token_losses


@dataclass(frozen=True)
class DpoResult:
    """What the steps changed, on a sample of the pairs themselves (too few to hold some out yet)."""

    steps: int
    first_loss: float  # log 2 when the policy starts as the reference
    last_loss: float  # mean of the last ten steps
    margin_before: float  # mean log p(chosen) - log p(rejected) of the model before the steps
    margin_after: float
    accuracy_before: float  # share of pairs whose chosen answer the model finds more likely than the rejected
    accuracy_after: float
    seconds: float


def encode_answer(storyteller: Storyteller, prompt: str, answer: str) -> Encoded:
    """The prompt (cut from the left to fit the window) and one answer, scored on the answer only."""
    tokenizer, window = storyteller.tokenizer, storyteller.max_length
    target: list[int] = tokenizer(answer, add_special_tokens=False)["input_ids"][: window // 2]
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if storyteller.seq2seq:
        return Encoded(prompt_ids[-window:], target)
    prompt_ids = prompt_ids[-(window - len(target)):]
    return Encoded(prompt_ids + target, [-100] * len(prompt_ids) + target)


def answer_logps(model: PreTrainedModel, storyteller: Storyteller, answers: Sequence[Encoded]) -> torch.Tensor:
    """Summed log-probability of each answer's tokens given its prompt."""
    batch = collate(answers, storyteller.pad_id, storyteller.seq2seq)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=storyteller.card.config.bf16):
        losses, _ = token_losses(model, batch, storyteller.seq2seq)
    return -losses.sum(dim=1)


def margins(model: PreTrainedModel, storyteller: Storyteller, pairs: Sequence[tuple[Encoded, Encoded]]) -> torch.Tensor:
    """Per pair: log p(chosen) - log p(rejected)."""
    return (answer_logps(model, storyteller, [c for c, _ in pairs])
            - answer_logps(model, storyteller, [r for _, r in pairs]))


@torch.no_grad()
def all_margins(model: PreTrainedModel, storyteller: Storyteller, pairs: Sequence[tuple[Encoded, Encoded]],
                batch_size: int = 32) -> torch.Tensor:
    """``margins`` of every pair, a batch at a time (one batch of thousands of windows would not fit)."""
    parts = [margins(model, storyteller, pairs[start:start + batch_size]) for start in range(0, len(pairs), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)


def preference_steps(storyteller: Storyteller, pairs: Sequence[PreferencePair], steps: int, beta: float = 0.1,
                     learning_rate: float = 1e-4, batch_size: int = 8, seed: int = 1234, sample: int = 256,
                     log: Callable[[dict[str, float], int], None] = lambda metrics, step: None) -> DpoResult:
    """``steps`` DPO updates of ``storyteller.model`` in place, against a frozen copy of it as it is now. What
    changed is measured on a seeded sample of at most ``sample`` pairs (scoring thousands takes minutes)."""
    if not pairs:  # say so, rather than fail deep inside the first batch
        raise TrainingError("no preference pairs to train on: the dataset version has none (export feedback "
                            "with `cyoa feedback export` first; its table says which rule dropped each pair)")
    started = time.monotonic()
    encoded = [(encode_answer(storyteller, p.prompt, p.chosen), encode_answer(storyteller, p.prompt, p.rejected))
               for p in pairs]
    rng = random.Random(seed)
    measured = rng.sample(encoded, min(sample, len(encoded)))
    policy = storyteller.model
    policy.eval()  # no dropout: the policy scores as the reference does, so the first loss is exactly log 2
    reference = copy.deepcopy(policy).requires_grad_(False)
    before = all_margins(policy, storyteller, measured)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=learning_rate)
    losses: list[float] = []
    for step in range(1, steps + 1):
        batch = rng.sample(encoded, min(batch_size, len(encoded)))
        with torch.no_grad():
            anchor = margins(reference, storyteller, batch)
        rewards = beta * (margins(policy, storyteller, batch) - anchor)
        loss = -functional.logsigmoid(rewards).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        log({"dpo_loss": loss.item(), "dpo_reward_margin": rewards.mean().item() / beta}, step)
    after = all_margins(policy, storyteller, measured)
    tail = losses[-10:]  # one batch's loss is noisy: the mean of the last ten steps
    return DpoResult(steps, losses[0] if losses else 0.0, sum(tail) / max(1, len(tail)), before.mean().item(),
                     after.mean().item(), (before > 0).float().mean().item(), (after > 0).float().mean().item(),
                     time.monotonic() - started)
