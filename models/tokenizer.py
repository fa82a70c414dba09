"""A byte-level BPE tokenizer trained on the training split, with the prompt format's markers."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from engine.errors import ModelLoadError
from engine.prompt_format import END, PAD, SPECIAL_TOKENS


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts``. Markers are single tokens and never split."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=END, bos_token=END)
    add_markers(tokenizer)
    return tokenizer


def add_markers(tokenizer: PreTrainedTokenizerBase) -> int:
    """Make every marker one special token (for a base model's own tokenizer), and ``<|pad|>`` the pad token
    if it has none; returns how many tokens were added, so the caller can resize the embeddings. Generation
    stops at ``<|end|>`` whatever the tokenizer's own end-of-sequence token is."""
    vocab = tokenizer.get_vocab()
    missing = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS if t not in vocab]
    added = tokenizer.add_tokens(missing, special_tokens=True) if missing else 0
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD
    return int(added)


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of a token that must be a single token (a marker); a clear error otherwise."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int) or (token in SPECIAL_TOKENS and found == tokenizer.unk_token_id):
        raise ModelLoadError(f"the tokenizer has no single token for {token!r}")
    return found
