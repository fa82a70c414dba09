"""The storyteller: a causal (GPT-2, Llama families) or seq2seq (T5/BART) model with its tokenizer and its card.

A storyteller folder holds ``model/`` (all weights) or ``adapter/`` (a LoRA adapter over a pinned pretrained
base, see ``models.pretrained``), ``tokenizer/`` and ``storyteller.json`` (prompt-format version, family, the
training config that rebuilds it, the dataset digest, the base). The same folder is what MLflow logs: an
adapter version costs about 20 MB, not a copy of the base.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import PeftModel
from torch.nn import functional
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.generation.streamers import BaseStreamer

from engine.errors import BaseModelError, ModelLoadError
from engine.prompt_format import END, PAD, PROMPT_FORMAT_VERSION, StoryContext
from models.config import Sampling, TrainConfig
from models.examples import Encoded, generation_prompts
from models.grammar import SceneGrammar
from models.pretrained import BaseRef, resolve_base
from models.tokenizer import token_id

CARD_FILE = "storyteller.json"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
CAUSAL = "causal"
SEQ2SEQ = "seq2seq"

# Loading reads files as data only: no hub, and no Python a model or tokenizer folder names (``auto_map``).
_DATA_ONLY: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}

# torch's global RNG is shared: seeded generation must not interleave with another thread's.
_GENERATION_LOCK = threading.Lock()


@dataclass(frozen=True)
class Card:
    """What a storyteller folder says about itself."""

    prompt_format_version: int
    family: str
    config: TrainConfig
    dataset_digest: str | None = None
    base: BaseRef | None = None  # the pretrained base an adapter (or a full fine-tune) started from

    def to_json(self) -> str:
        return json.dumps({"prompt_format_version": self.prompt_format_version, "family": self.family,
                           "config": self.config.to_dict(), "dataset_digest": self.dataset_digest,
                           "base": self.base.to_dict() if self.base else None}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Card:
        data = json.loads(text)
        base = BaseRef.from_dict(data["base"]) if data.get("base") else None
        return cls(int(data["prompt_format_version"]), str(data["family"]), TrainConfig.from_dict(data["config"]),
                   data.get("dataset_digest"), base)


def collate(batch: Sequence[Encoded], pad_id: int, seq2seq: bool) -> dict[str, torch.Tensor]:
    """Right-pad a batch. Causal: labels follow input_ids; seq2seq: labels are padded separately."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    label_width = max(len(e.labels) for e in batch) if seq2seq else width
    labels = torch.full((len(batch), label_width), -100, dtype=torch.long)
    for row, example in enumerate(batch):
        ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        mask[row, : len(example.input_ids)] = 1
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Storyteller:
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, card: Card,
                 version: str = "local", folder: Path | None = None) -> None:
        self.model = model
        self.folder = folder  # where it was loaded from (an adapter is reloaded from there to train it further)
        self.tokenizer = tokenizer
        self.card = card
        self.version = version
        self.end_id = token_id(tokenizer, END)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else token_id(tokenizer, PAD)

    @property
    def seq2seq(self) -> bool:
        return self.card.family == SEQ2SEQ

    @property
    def max_length(self) -> int:
        return self.card.config.max_length

    @property
    def window(self) -> int:
        """Prompt + answer at generation."""
        return self.card.config.generation_window

    @property
    def sampling(self) -> Sampling:
        return self.card.config.sampling

    @property
    def is_adapter(self) -> bool:
        return isinstance(self.model, PeftModel)

    # --- saving and loading -------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.model, PeftModel):
            # The added markers' rows travel as trainable tokens; the rest of the embedding is the base's.
            self.model.save_pretrained(folder / ADAPTER_DIR, save_embedding_layers=False)
        else:
            self.model.save_pretrained(folder / MODEL_DIR)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        (folder / CARD_FILE).write_text(self.card.to_json(), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path, version: str = "local", trainable: bool = False) -> Storyteller:
        """Load a storyteller folder, from local files only (never a hub). An adapter is applied to its base and,
        unless ``trainable`` (to go on training it), merged into it: generation then runs at the base's speed."""
        card_path = folder / CARD_FILE
        try:
            card = Card.from_json(card_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{folder}: no {CARD_FILE}; this is not a cyoa storyteller") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{card_path}: unreadable or corrupt ({exc})") from exc
        if card.prompt_format_version != PROMPT_FORMAT_VERSION:
            raise ModelLoadError(
                f"model version {version} was trained with prompt format {card.prompt_format_version}, but this "
                f"cyoa speaks format {PROMPT_FORMAT_VERSION}: retrain it with `cyoa train`, or run the cyoa "
                f"release that trained it"
            )
        loader: Any = AutoModelForSeq2SeqLM if card.family == SEQ2SEQ else AutoModelForCausalLM
        adapter = (folder / ADAPTER_DIR).is_dir()
        if adapter and card.base is None:
            raise ModelLoadError(f"{folder}: an adapter without a recorded base in {CARD_FILE}; retrain it")
        _refuse_pickled_weights(folder / (ADAPTER_DIR if adapter else MODEL_DIR))
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", **_DATA_ONLY)
            if adapter and card.base is not None:
                model = _with_adapter(loader, resolve_base(card.base), folder / ADAPTER_DIR, len(tokenizer), trainable)
            else:
                model = loader.from_pretrained(folder / MODEL_DIR, use_safetensors=True, weights_only=True,
                                               **_DATA_ONLY)
        except BaseModelError:
            raise
        except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors...
            raise ModelLoadError(f"{folder}: the model or tokenizer files are corrupt or missing ({exc})") from exc
        model.eval()
        return cls(model, tokenizer, card, version, folder)

    # --- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def row_losses(self, batch: dict[str, torch.Tensor], bf16: bool = False) -> tuple[list[float], list[int]]:
        """Per example of the batch: summed negative log-likelihood of its label tokens, and their count."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses, mask = token_losses(self.model, batch, self.seq2seq)
        return losses.sum(dim=1).tolist(), mask.sum(dim=1).tolist()

    # --- writing ------------------------------------------------------------------------------
    def write(self, contexts: Sequence[StoryContext], sampling: Sampling | None = None,
              seed: int | None = None, must_end: Sequence[bool] | None = None,
              may_end: Sequence[bool] | None = None, on_text: Callable[[int, str], None] | None = None) -> list[str]:
        """Write the next scene for every context in one batched ``generate`` call. ``must_end`` / ``may_end``
        mark the contexts whose answer must / must not be an ending (the grammar enforces them when decoding
        is constrained); ``on_text`` sees each (row, answer so far) as it grows."""
        sampling = sampling or self.sampling
        prompts = generation_prompts(self.tokenizer, contexts, self.window, sampling.max_new_tokens, self.seq2seq)
        return self.generate(prompts, sampling, seed, must_end, may_end, on_text)

    def generate_from_text(self, prompts: Sequence[str], sampling: Sampling | None = None,
                           seed: int | None = None) -> list[str]:
        """Generate from already rendered prompts (the pyfunc ``predict`` path); prompts are cut from the left."""
        sampling = sampling or self.sampling
        budget = self.window if self.seq2seq else self.window - sampling.max_new_tokens
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"][-budget:] for p in prompts]
        return self.generate(ids, sampling, seed)

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], sampling: Sampling, seed: int | None = None,
                 must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
                 on_text: Callable[[int, str], None] | None = None) -> list[str]:
        if not prompts:
            return []
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            if self.seq2seq:  # encoder inputs: right padding
                ids[row, : len(prompt)] = torch.tensor(prompt)
                mask[row, : len(prompt)] = 1
            else:  # decoder-only: left padding, so every row continues from its last real token
                ids[row, width - len(prompt):] = torch.tensor(prompt)
                mask[row, width - len(prompt):] = 1
        with _GENERATION_LOCK:
            if seed is not None:
                torch.manual_seed(seed)
            # Generated tokens start after the prompt (decoder-only) or after the decoder's start token.
            grammar = SceneGrammar(self.tokenizer, 1 if self.seq2seq else width, sampling.max_new_tokens,
                                   must_end=list(must_end) if must_end is not None else None,
                                   may_end=list(may_end) if may_end is not None else None)
            output = cast(Any, self.model).generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=sampling.temperature,
                top_p=sampling.top_p, repetition_penalty=sampling.repetition_penalty,
                max_new_tokens=sampling.max_new_tokens, eos_token_id=self.end_id, pad_token_id=self.pad_id,
                logits_processor=LogitsProcessorList([grammar] if sampling.constrained else []),
                streamer=_RowStreamer(self, len(prompts), on_text) if on_text is not None else None,
            )
        new_tokens = output if self.seq2seq else output[:, width:]
        return [self.decode_answer(row.tolist()) for row in new_tokens]

    def decode_answer(self, ids: list[int]) -> str:
        """Generated token ids as the answer text: padding dropped, cut after ``<|end|>``, markers kept."""
        ids = [i for i in ids if i != self.pad_id]
        if self.end_id in ids:
            ids = ids[: ids.index(self.end_id) + 1]
        text = str(self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        # A seq2seq decoder starts with its own start token (T5's <pad>, BART's </s>): not part of the answer.
        for token in (self.tokenizer.pad_token, self.tokenizer.bos_token, getattr(self.tokenizer, "eos_token", None)):
            if token and token != END:
                text = text.replace(token, "")
        return text.strip()


class _RowStreamer(BaseStreamer):
    """transformers' streamer protocol for a batch: each new step's tokens, one per row, go to ``on_text`` as
    that row's answer so far (its first ``put`` is the prompt, skipped)."""

    def __init__(self, teller: Storyteller, rows: int, on_text: Callable[[int, str], None]) -> None:
        self.teller = teller
        self.on_text = on_text
        self.written: list[list[int]] = [[] for _ in range(rows)]
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()[: len(self.written)]):
            if self.teller.end_id not in self.written[row]:
                self.written[row].append(int(token))
                self.on_text(row, self.teller.decode_answer(self.written[row]))

    def end(self) -> None:
        pass


def _refuse_pickled_weights(folder: Path) -> None:
    """A storyteller's own weights are safetensors (what ``save`` writes). A folder that holds only a pickle
    format (``*.bin``, ``*.pt``, ``*.pkl``) is refused, so no loader falls back to unpickling it."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise ModelLoadError(f"{folder}: no weights in safetensors format (a pickled checkpoint is never loaded: "
                             f"it can run code); retrain it with `cyoa train`")


def _with_adapter(loader: Any, base: Path, adapter: Path, vocab: int, trainable: bool) -> Any:
    """The base with the adapter applied: merged for inference, or a trainable ``PeftModel``."""
    # A --base-model folder may hold *.bin weights: weights_only=True reads them without running their pickle.
    model = loader.from_pretrained(base, dtype=torch.float32, weights_only=True, **_DATA_ONLY)
    if model.get_input_embeddings().num_embeddings != vocab:
        # The marker rows are overwritten by the adapter's trainable tokens: no need for a careful init here.
        model.resize_token_embeddings(vocab, mean_resizing=False)
    wrapped = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    return wrapped if trainable else wrapped.merge_and_unload()


def token_losses(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], seq2seq: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every label token (0 where the label is -100), and the mask of counted tokens.

    Causal models predict the next token, so logits and labels are shifted by one. For GPT-2 the output
    layer runs only at the target positions: the prompt is most of each sequence and needs no logits,
    which saves a quarter of the training time of the starter model (bench/, README).
    """
    forward = cast(Any, model)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    if seq2seq:
        labels = batch["labels"]
        logits = forward(input_ids=ids, attention_mask=attention, labels=labels).logits
        mask = labels != -100
        flat = functional.cross_entropy(logits[mask].float(), labels[mask], reduction="none")
    else:
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        if getattr(model.config, "model_type", "") == "gpt2":
            hidden = forward.transformer(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
            logits = forward.lm_head(hidden[mask])
        else:
            logits = forward(input_ids=ids, attention_mask=attention).logits[:, :-1][mask]
        flat = functional.cross_entropy(logits.float(), labels[mask], reduction="none")
    losses = torch.zeros(labels.shape, dtype=flat.dtype)
    losses[mask] = flat
    return losses, mask


def token_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor], seq2seq: bool) -> torch.Tensor:
    """Mean cross-entropy over all label tokens of the batch: the training objective."""
    losses, mask = token_losses(model, batch, seq2seq)
    return losses.sum() / mask.sum().clamp(min=1)

