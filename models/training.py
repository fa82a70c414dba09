"""Training: one short loop for a GPT-2 from scratch or a local checkpoint (causal or seq2seq).

What a demanding user expects of it: every hyperparameter and the dataset digest in MLflow, train loss and
learning rate per step, validation loss and perplexity, the best checkpoint kept, early stopping on
validation loss, a time budget that ends training cleanly, and resume from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
)

from engine.errors import TrainingError
from engine.prompt_format import END, PAD, PROMPT_FORMAT_VERSION
from models.config import TrainConfig
from models.examples import Encoded, Example, encode
from models.pretrained import ensure_base, local_reference
from models.storyteller import CAUSAL, SEQ2SEQ, Card, Storyteller, collate, token_loss
from models.tokenizer import add_markers, token_id, train_tokenizer

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: int
    train_loss: float
    best_val_loss: float | None


@dataclass
class TrainState:
    """Everything besides the weights that a resumed run needs (saved as JSON next to the checkpoint)."""

    run_id: str
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    evals_without_gain: int = 0
    finished: bool = False
    stop_reason: str = ""
    tokens_seen: int = 0


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    best_checkpoint: Path
    best_val_loss: float
    best_step: int
    steps: int
    epochs_run: float
    stop_reason: str
    seconds: float
    tokens_per_second: float
    parameters: int


# --- building a model ---------------------------------------------------------------------------
def new_storyteller(config: TrainConfig, train_texts: Sequence[str], dataset_digest: str | None) -> Storyteller:
    """A fresh GPT-2 and tokenizer for a preset, or a pretrained base (named, or a local checkpoint) ready to
    fine-tune, wrapped in a LoRA adapter when the config asks for one."""
    if config.pretrained:
        return _from_base(config, ensure_base(config.pretrained), dataset_digest)
    if config.base_model:
        return _from_base(config, Path(str(config.base_model)), dataset_digest)
    if config.architecture is None:
        raise TrainingError(f"preset {config.preset} has no architecture and no base model")
    arch = config.architecture
    torch.manual_seed(config.seed)  # the same config and data give the same initial weights
    tokenizer = train_tokenizer(train_texts, arch.vocab_size)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=arch.n_positions, n_embd=arch.n_embd, n_layer=arch.n_layer,
        n_head=arch.n_head, resid_pdrop=arch.dropout, embd_pdrop=arch.dropout, attn_pdrop=arch.dropout,
        bos_token_id=token_id(tokenizer, END), eos_token_id=token_id(tokenizer, END),
        pad_token_id=token_id(tokenizer, PAD), tie_word_embeddings=True,
    ))
    return Storyteller(model, tokenizer, Card(PROMPT_FORMAT_VERSION, CAUSAL, config, dataset_digest))


def _from_base(config: TrainConfig, base: Path, dataset_digest: str | None) -> Storyteller:
    if not (base / "config.json").exists():
        raise TrainingError(f"--base-model {base}: no config.json there; point it at a local Hugging Face "
                            f"checkpoint folder (the hub cannot be reached)")
    try:
        hf_config = AutoConfig.from_pretrained(base, local_files_only=True)
        family = SEQ2SEQ if getattr(hf_config, "is_encoder_decoder", False) else CAUSAL
        loader: Any = AutoModelForSeq2SeqLM if family == SEQ2SEQ else AutoModelForCausalLM
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = loader.from_pretrained(base, local_files_only=True, dtype=torch.float32)
    except Exception as exc:  # transformers raises many kinds for an unusable folder
        raise TrainingError(f"--base-model {base}: cannot load the checkpoint or its tokenizer ({exc})") from exc
    before = len(tokenizer)
    if add_markers(tokenizer):
        # New rows start at the mean of the old ones, so the markers begin as "some token", not noise.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        _mean_init(model, before)
    model.config.pad_token_id = tokenizer.pad_token_id
    if config.lora_rank > 0:
        if family == SEQ2SEQ:
            raise TrainingError("LoRA is for causal models here; fine-tune a seq2seq base fully (lora_rank 0)")
        model = _lora(model, config, list(range(before, len(tokenizer))))
    return Storyteller(model, tokenizer, Card(PROMPT_FORMAT_VERSION, family, config, dataset_digest,
                                              local_reference(base)))


@torch.no_grad()
def _mean_init(model: Any, old_rows: int) -> None:
    """Added rows get the mean of the existing embedding (transformers' own mean init samples a multivariate
    normal, which needs a covariance of the whole vocabulary: slow and memory-hungry for 49 k rows)."""
    for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
        if layer is not None and layer.weight.shape[0] > old_rows:
            layer.weight[old_rows:] = layer.weight[:old_rows].mean(dim=0)


def _lora(model: Any, config: TrainConfig, new_tokens: list[int]) -> Any:
    """LoRA on every linear layer; the added markers' embedding rows are trained too (as peft trainable tokens,
    saved with the adapter), since a base has never seen them."""
    from peft import LoraConfig, get_peft_model

    embedding = model.get_input_embeddings()
    name = next(path.rsplit(".", 1)[-1] for path, module in model.named_modules() if module is embedding)
    extra: dict[str, Any] = {"trainable_token_indices": {name: new_tokens}} if new_tokens else {}
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM", **extra)
    return get_peft_model(model, lora)


def count_parameters(model: torch.nn.Module, trainable: bool = False) -> int:
    # Tied weights are one tensor: count each parameter object once.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad or not trainable)


# --- batching -----------------------------------------------------------------------------------
def batches(encoded: Sequence[Encoded], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices of each batch for one epoch: shuffled, then sorted by length within windows of 50 batches
    so a batch pads little, then the batches shuffled again."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * 50
    out: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: len(encoded[i].input_ids))
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.95))


@torch.no_grad()
def validation_loss(storyteller: Storyteller, encoded: Sequence[Encoded], batch_size: int, bf16: bool) -> float:
    storyteller.model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = collate([encoded[i] for i in order[start:start + batch_size]], storyteller.pad_id, storyteller.seq2seq)
        losses, counts = storyteller.row_losses(batch, bf16)
        total += sum(losses)
        count += sum(counts)
    storyteller.model.train()
    return total / max(1, count)


# --- the loop -----------------------------------------------------------------------------------
class TrainingRun:
    """One training run. ``log`` receives MLflow-bound metrics; ``on_progress`` drives a progress bar."""

    def __init__(self, storyteller: Storyteller, train: Sequence[Example], validation: Sequence[Example],
                 folder: Path, state: TrainState, log: Callable[[dict[str, float], int], None],
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        if not train or not validation:
            raise TrainingError("training needs examples in both the train and the validation split")
        self.storyteller = storyteller
        self.config = storyteller.card.config
        self.folder = folder
        self.state = state
        self.log = log
        self.on_progress = on_progress or (lambda _: None)
        tokenizer, length, s2s = storyteller.tokenizer, self.config.max_length, storyteller.seq2seq
        self.train = [encode(tokenizer, e, length, s2s, prompt_loss=self.config.prompt_loss) for e in train]
        self.validation = [encode(tokenizer, e, length, s2s) for e in validation]
        self.steps_per_epoch = math.ceil(len(self.train) / self.config.batch_size)
        self.total_steps = self.steps_per_epoch * self.config.max_epochs
        # Batches of an epoch after which to evaluate: evenly spread, the last one always included.
        evals = max(1, min(self.config.evals_per_epoch, self.steps_per_epoch))
        self.eval_points = {round(k * self.steps_per_epoch / evals) for k in range(1, evals + 1)}
        self.optimizer = _optimizer(storyteller.model, self.config)

    @property
    def best_dir(self) -> Path:
        return self.folder / "best"

    @property
    def last_dir(self) -> Path:
        return self.folder / "last"

    def run(self, max_minutes: float | None = None) -> TrainState:
        torch.manual_seed(self.config.seed + self.state.step)
        model = self.storyteller.model
        model.train()
        started = time.monotonic()
        window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.monotonic()
        for batch_ids, epoch, index in self._remaining_batches():
            if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
                self._stop("time budget")
                break
            batch = collate([self.train[i] for i in batch_ids], self.storyteller.pad_id, self.storyteller.seq2seq)
            rate = learning_rate(self.config, self.state.step, self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
                loss = token_loss(model, batch, self.storyteller.seq2seq)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state.step += 1
            self.state.epoch, self.state.batch_in_epoch = epoch, index + 1
            seen = int(batch["attention_mask"].sum())
            self.state.tokens_seen += seen
            window_loss, window_steps, window_tokens = window_loss + loss.item(), window_steps + 1, window_tokens + seen
            if self.state.step % 10 == 0 or self.state.step == 1:
                elapsed = max(1e-6, time.monotonic() - window_start)
                self.log({"train_loss": window_loss / window_steps, "learning_rate": rate,
                          "tokens_per_second": window_tokens / elapsed}, self.state.step)
                window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.monotonic()
            self.on_progress(Progress(self.state.step, self.total_steps, epoch, loss.item(),
                                      None if math.isinf(self.state.best_val_loss) else self.state.best_val_loss))
            if index + 1 in self.eval_points and self._evaluate():
                break
        else:
            self._stop("max epochs")
        self._save_last()
        return self.state

    def _remaining_batches(self) -> Iterator[tuple[list[int], int, int]]:
        for epoch in range(self.state.epoch, self.config.max_epochs):
            plan = batches(self.train, self.config.batch_size, self.config.seed, epoch)
            start = self.state.batch_in_epoch if epoch == self.state.epoch else 0
            if start >= len(plan):
                continue
            for index in range(start, len(plan)):
                yield plan[index], epoch, index

    def _evaluate(self) -> bool:
        """Validation loss; keeps the best checkpoint; returns True when early stopping ends the run."""
        loss = validation_loss(self.storyteller, self.validation, self.config.batch_size, self.config.bf16)
        self.log({"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)),
                  "epoch": self.state.step / self.steps_per_epoch}, self.state.step)
        if loss < self.state.best_val_loss - 1e-4:
            self.state.best_val_loss, self.state.best_step, self.state.evals_without_gain = loss, self.state.step, 0
            self.storyteller.save(self.best_dir)
        else:
            self.state.evals_without_gain += 1
        self._save_last()
        if self.state.evals_without_gain >= self.config.patience:
            self._stop("early stopping")
            return True
        return False

    def _stop(self, reason: str) -> None:
        self.state.stop_reason = reason

    def _save_last(self) -> None:
        """Weights, optimizer and counters: enough to resume exactly here."""
        tmp = self.folder / "last.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.storyteller.save(tmp)
        torch.save(self.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(self.state.__dict__, indent=2), encoding="utf-8")
        shutil.rmtree(self.last_dir, ignore_errors=True)
        tmp.replace(self.last_dir)

    def load_optimizer(self) -> None:
        path = self.last_dir / OPTIMIZER_FILE
        if path.exists():
            self.optimizer.load_state_dict(torch.load(path, weights_only=True))


def load_state(folder: Path) -> TrainState:
    try:
        return TrainState(**json.loads((folder / "last" / STATE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingError(f"{folder}: no usable checkpoint to resume ({exc})") from exc


def unfinished_runs(checkpoints: Path) -> list[Path]:
    """Checkpoint folders of runs that did not finish, newest first."""
    found = []
    for state_file in checkpoints.glob(f"*/last/{STATE_FILE}"):
        try:
            if not json.loads(state_file.read_text(encoding="utf-8")).get("finished"):
                found.append(state_file.parent.parent)
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
