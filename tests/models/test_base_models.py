"""``--base-model``: fine-tuning a local Hugging Face checkpoint, causal (GPT-2) or seq2seq (T5, BART).

The checkpoints are tiny, randomly initialised and saved to a temporary folder, as a user's would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as token_models
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.prompt_format import SPECIAL_TOKENS, StoryContext
from models.examples import step_context
from models.registry import load_storyteller
from models.train_job import train_model
from tests.models.conftest import MODEL, small_dataset, tiny


@pytest.fixture(scope="module")
def few_stories(tmp_path_factory: pytest.TempPathFactory) -> DatasetVersion:
    return small_dataset(tmp_path_factory.mktemp("few"), genres=4)


def plain_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer that knows nothing of the story markers, like any base model's."""
    core = Tokenizer(token_models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>")


def save_checkpoint(folder: Path, family: str, texts: list[str]) -> Path:
    # Without the story markers: training must add them and resize the embeddings.
    tokenizer = plain_tokenizer(texts)
    vocab = len(tokenizer)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=384, n_embd=32, n_layer=1, n_head=2,
                                           pad_token_id=pad, eos_token_id=eos, bos_token_id=eos))
    elif family == "t5":
        model = T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_ff=64, d_kv=16, num_layers=1,
                                                    num_heads=2, pad_token_id=pad, eos_token_id=eos,
                                                    decoder_start_token_id=pad))
    else:
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=vocab, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=400,
            pad_token_id=pad, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=eos, forced_eos_token_id=None))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("family", "expected"), [("gpt2", "causal"), ("t5", "seq2seq"), ("bart", "seq2seq")])
def test_fine_tune_a_local_checkpoint(family: str, expected: str, few_stories: DatasetVersion,
                                      fresh_tracking: TrackingTarget, tmp_path: Path) -> None:
    texts = [s.scene for s in few_stories.splits["train"]] + [s.next_scene for s in few_stories.splits["train"]]
    base = save_checkpoint(tmp_path / family, family, texts)
    outcome = train_model(tiny(base_model=str(base), architecture=None, max_epochs=1, learning_rate=1e-3),
                          few_stories, fresh_tracking, tmp_path / "checkpoints", MODEL)
    storyteller = load_storyteller(fresh_tracking, f"models:/{MODEL}@challenger")
    assert storyteller.card.family == expected
    assert storyteller.card.config.base_model == str(base)
    assert all(len(storyteller.tokenizer.tokenize(marker)) == 1 for marker in SPECIAL_TOKENS)  # markers added
    assert storyteller.model.get_input_embeddings().num_embeddings >= len(storyteller.tokenizer)
    contexts: list[StoryContext] = [step_context(s) for s in few_stories.splits["test"][:3]]
    texts_out = storyteller.write(contexts, seed=1)
    assert len(texts_out) == 3 and all(isinstance(t, str) for t in texts_out)
    assert outcome.state.best_val_loss < 20
