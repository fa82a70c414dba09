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
    LlamaConfig,
    LlamaForCausalLM,
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
    elif family == "llama":  # the SmolLM2 family: grouped-query attention, tied embeddings
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                             tie_word_embeddings=True, pad_token_id=pad, eos_token_id=eos,
                                             bos_token_id=eos))
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


@pytest.mark.parametrize(("family", "expected"), [("gpt2", "causal"), ("llama", "causal"), ("t5", "seq2seq"),
                                                ("bart", "seq2seq")])
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


def artifact_files(tracking: TrackingTarget, version: str) -> list[Path]:
    from mlflow.tracking import MlflowClient

    source = MlflowClient(tracking.uri).get_model_version(MODEL, version).source
    found = sorted(Path(tracking.artifact_root or ".").rglob("storyteller.json"))
    assert found, f"no storyteller folder logged for {source}"
    return [path for path in found[-1].parent.rglob("*") if path.is_file()]


def test_lora_adapter_over_a_local_llama_is_small_pinned_and_fine_tunes_further(
        few_stories: DatasetVersion, fresh_tracking: TrackingTarget, tmp_path: Path) -> None:
    import torch

    from engine.errors import BaseModelError
    from models.storyteller import Storyteller
    from models.train_job import fine_tune_config

    texts = [s.scene for s in few_stories.splits["train"]] + [s.next_scene for s in few_stories.splits["train"]]
    base = save_checkpoint(tmp_path / "llama", "llama", texts)
    before = {k: v.clone() for k, v in LlamaForCausalLM.from_pretrained(base).state_dict().items()}
    outcome = train_model(tiny(base_model=str(base), architecture=None, max_epochs=1, learning_rate=3e-3, lora_rank=4),
                          few_stories, fresh_tracking, tmp_path / "checkpoints", MODEL)
    # The version holds an adapter and the base's reference, not the base's weights.
    files = artifact_files(fresh_tracking, outcome.registered.version)
    names = {path.name for path in files}
    assert "adapter_model.safetensors" in names and "model.safetensors" not in names
    assert outcome.checkpoint.joinpath("adapter").is_dir()
    storyteller = load_storyteller(fresh_tracking, f"models:/{MODEL}@challenger")
    assert storyteller.card.base is not None and storyteller.card.base.source == str(base.resolve())
    assert storyteller.card.config.lora_rank == 4 and not storyteller.is_adapter  # merged for generation
    # Training changed the model (LoRA and the marker rows) but never the base's files.
    after = LlamaForCausalLM.from_pretrained(base).state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    marker = storyteller.tokenizer.convert_tokens_to_ids("<|scene|>")
    assert marker >= len(before["model.embed_tokens.weight"])
    assert storyteller.write([step_context(few_stories.splits["test"][0])], seed=3)[0].startswith("<|scene|>")

    # Fine-tuning that version again trains the same adapter over the same base.
    config = fine_tune_config(storyteller, None, max_epochs=1)
    second = train_model(config, few_stories, fresh_tracking, tmp_path / "checkpoints", MODEL, parent=storyteller)
    child = Storyteller.load(second.checkpoint)
    assert child.card.base == storyteller.card.base and second.checkpoint.joinpath("adapter").is_dir()
    assert second.parent_val_loss is not None

    # A base that changed under the adapter is refused with what to do.
    changed = LlamaForCausalLM.from_pretrained(base)
    with torch.no_grad():
        changed.model.norm.weight.add_(0.5)
    changed.save_pretrained(base)
    with pytest.raises(BaseModelError, match="has changed since this model was fine-tuned"):
        Storyteller.load(second.checkpoint)
