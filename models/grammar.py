"""Constrained decoding: the model samples freely, but only answers that parse can come out.

A small model trained on a thousand scenes writes fair prose long before it reliably closes a scene with
2-4 choices; a malformed answer costs the engine a retry. ``SceneGrammar`` is a logits processor that
follows the answer's grammar token by token and masks what would break it::

    <|scene|> narration (min..max tokens) ( <|choices|> (<|choice|> text){2,4} | <|ending|> kind ) <|end|>

and reads the text as it grows, the way the engine's checks will: the narration closes only at the end of a
sentence, each choice runs 3-14 words and never stops mid-phrase, and room is kept for the choices so the token
limit never cuts one off.

Within those rules the model's own distribution decides everything: how long the narration runs, whether
the scene ends, how many choices and what they say. Evaluation reports the parse rate with and without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np
import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from engine.checks import DANGLING_WORDS, dangling
from engine.prompt_format import CHOICE, CHOICES, END, ENDING, SCENE, SPECIAL_TOKENS
from engine.story import EndingKind
from models.tokenizer import token_id


@dataclass(frozen=True)
class GrammarLimits:
    min_narration: int = 24  # tokens before the scene may close
    # A choice is an action a player reads in one glance: 3-14 words (the dataset's range), never a fragment
    # ("Sh") and never cut off mid-phrase ("Let Kanpei-kun take the": ``engine.checks.dangling``).
    min_choice_words: int = 3
    max_choice_words: int = 14
    max_choice_tokens: int = 32  # a hard stop for a choice that will not close (14 words run ~18 tokens)
    min_choice_tokens: int = 3  # what a missing choice needs at the least when room runs out
    new_choice_tokens: int = 12  # room a further (third, fourth) choice needs before it may start
    min_choices: int = 2
    max_choices: int = 4
    # The narration closes at the end of a sentence. Within ``closing_window`` tokens of the room kept for the
    # choices it closes at the first sentence end; at the room itself it may only finish its sentence.
    choice_room: int = 32  # two choices of ~10 tokens, their markers and the end
    closing_window: int = 48


@dataclass(frozen=True)
class _Vocabulary:
    """What the grammar needs to know of each token, computed once per tokenizer."""

    starts_word: np.ndarray  # the token begins with white space: it starts a new word
    ends_sentence: np.ndarray  # the token is punctuation that ends a sentence (".", "?!", '."')
    not_dangling: np.ndarray  # the token is not a whole word a choice cannot end on (" the", " to")
    continues_word: np.ndarray  # letters with no space before them: the rest of the word being written


_LETTERS = re.compile(r"^[^\W\d_]+$")
_SENTENCE_END = re.compile(r"^[.!?]+[\"')\]*]*$")
_WORD_SPACE = ("\u0120", "\u010a", "\u0109", "\u2581")  # byte-level space, newline, tab; SentencePiece space
_vocabularies: WeakKeyDictionary[PreTrainedTokenizerBase, _Vocabulary] = WeakKeyDictionary()


def vocabulary(tokenizer: PreTrainedTokenizerBase) -> _Vocabulary:
    found = _vocabularies.get(tokenizer)
    if found is None:
        pieces = [str(p or "") for p in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
        starts = np.array([p[:1] in _WORD_SPACE or p[:1].isspace() for p in pieces], dtype=bool)
        bare = [p.lstrip("".join(_WORD_SPACE)) for p in pieces]
        ends = np.array([bool(_SENTENCE_END.match(b)) for b in bare], dtype=bool)
        loose = np.array([s and b.casefold() in DANGLING_WORDS for s, b in zip(starts, bare, strict=True)])
        letters = np.array([not s and bool(_LETTERS.match(b)) for s, b in zip(starts, bare, strict=True)])
        found = _vocabularies[tokenizer] = _Vocabulary(starts, ends, ~loose, letters)
    return found


def _closes_sentence(text: str) -> bool:
    """The narration so far ends a sentence (closing quotes, brackets and emphasis may follow the stop)."""
    return text.rstrip().rstrip("\"'\u201d\u2019)]*").endswith((".", "!", "?", "\u2026"))


class SceneGrammar(LogitsProcessor):
    def __init__(self, tokenizer: PreTrainedTokenizerBase, start: int, max_new_tokens: int,
                 limits: GrammarLimits = GrammarLimits(), must_end: list[bool] | None = None,
                 may_end: list[bool] | None = None) -> None:
        self.start = start
        self.tokenizer = tokenizer
        self.must_end = must_end or []
        self.may_end = may_end or []
        self.max_new_tokens = max_new_tokens
        self.limits = limits
        self.scene, self.choices, self.choice, self.ending, self.end = (
            token_id(tokenizer, marker) for marker in (SCENE, CHOICES, CHOICE, ENDING, END))
        self.markers = {token_id(tokenizer, marker) for marker in SPECIAL_TOKENS}
        # A base's own special tokens (SmolLM2's <|im_start|>, <|im_end|>, <|endoftext|>) never belong in a scene.
        for extra in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
                      *tokenizer.all_special_ids):
            if extra is not None:
                self.markers.add(int(extra))
        self._marker_ids = np.array(sorted(self.markers), dtype=np.int64)
        self.kinds = [tuple(tokenizer(str(kind), add_special_tokens=False)["input_ids"]) for kind in EndingKind]
        self.vocabulary = vocabulary(tokenizer)

    def _text(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def allowed(self, generated: list[int], must_end: bool = False,
                may_end: bool = True) -> tuple[set[int] | np.ndarray | None, set[int]]:
        """(only these tokens, or None for any text token) and the markers allowed besides. ``must_end``:
        the scene can only close with an ending; ``may_end`` false: only with choices. "These tokens" is a
        set of ids or a boolean row over the vocabulary (the tokens that keep a word or finish a sentence)."""
        remaining = self.max_new_tokens - len(generated)
        if not generated:
            return set(), {self.scene}
        if self.end in generated:
            return set(), {self.end}
        if self.ending in generated:
            return self._ending(generated[generated.index(self.ending) + 1:])
        if self.choices in generated:
            return self._choices(generated[generated.index(self.choices) + 1:], remaining)
        return self._narration(generated[1:], remaining, must_end, may_end)

    def _narration(self, narration: list[int], remaining: int, must_end: bool,
                   may_end: bool) -> tuple[set[int] | np.ndarray | None, set[int]]:
        if len(narration) < self.limits.min_narration:
            return None, set()
        closers = {self.ending} if must_end else {self.choices, self.ending} if may_end else {self.choices}
        room = self.limits.choice_room
        if remaining <= room // 2:  # out of room: close even mid-sentence, or the answer cannot parse
            return set(), closers
        at_stop = _closes_sentence(self._text(narration[-8:]))
        if at_stop and remaining <= room + self.limits.closing_window:
            return set(), closers  # near the end, the first full stop closes the narration
        if remaining <= room:
            return (set(), closers) if at_stop else (self.vocabulary.ends_sentence, set())
        return None, closers if at_stop else set()

    def _choices(self, after: list[int], remaining: int) -> tuple[set[int] | np.ndarray | None, set[int]]:
        if not after:
            return set(), {self.choice}
        limits = self.limits
        count = after.count(self.choice)
        begun = max(i for i, t in enumerate(after) if t == self.choice)
        since = len(after) - 1 - begun
        if since == 0:  # a choice needs at least one token of text
            return None, set()
        text = self._text(after[begun + 1:])
        words = len(text.split())
        done = words >= limits.min_choice_words and not dangling(text)
        # Tokens still needed after this one: <|end|>, and a marker plus a short choice for each missing one.
        needed = 1 + (1 + limits.min_choice_tokens) * max(0, limits.min_choices - count)
        closing = {self.end} if count >= limits.min_choices else set()
        if count < limits.min_choices or (count < limits.max_choices
                                          and remaining - 1 > needed + limits.new_choice_tokens):
            closing.add(self.choice)
        forced = remaining - 1 <= needed or since >= limits.max_choice_tokens
        if forced or (done and remaining - 1 <= needed + 4):  # close cleanly while there is still room to
            return set(), closing
        if words >= limits.max_choice_words and done:
            # No new word: only the rest of the word being written, or a full stop, or the close. (Letting any
            # token without a space through let the model run words together: "big-screen.ahead,".)
            if not text[-1:].isalpha():
                return set(), closing
            return self.vocabulary.continues_word | self.vocabulary.ends_sentence, closing
        if words >= limits.max_choice_words + 2:  # still stopping mid-phrase two words past the most: give up
            return set(), closing
        # The last word a choice may have is never one it cannot end on ("... hanging it off the").
        last_word = self.vocabulary.not_dangling if words == limits.max_choice_words - 1 else None
        return last_word, closing if done else set()

    def _ending(self, after: list[int]) -> tuple[set[int] | None, set[int]]:
        if tuple(after) in self.kinds:
            return set(), {self.end}
        done = len(after)
        return {kind[done] for kind in self.kinds if len(kind) > done and kind[:done] == tuple(after)}, set()

    def keep_mask(self, generated: list[int], size: int, must_end: bool = False, may_end: bool = True) -> np.ndarray:
        """The tokens that may come next, as a boolean row over a vocabulary of ``size`` (every decoding path,
        transformers' or llama.cpp's, masks with this one rule)."""
        only, allowed_markers = self.allowed(generated, must_end, may_end)
        if only is None:  # any text token, plus the allowed markers
            keep = np.ones(size, dtype=bool)
            keep[self._marker_ids] = False
        elif isinstance(only, np.ndarray):  # a class of text tokens (the vocabulary may be padded past its end)
            keep = np.zeros(size, dtype=bool)
            width = min(size, only.shape[0])
            keep[:width] = only[:width]
            keep[self._marker_ids[self._marker_ids < size]] = False
        else:
            keep = np.zeros(size, dtype=bool)
            keep[list(only)] = True
        keep[list(allowed_markers)] = True
        return keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            must_end = row < len(self.must_end) and self.must_end[row]
            may_end = row >= len(self.may_end) or self.may_end[row]
            keep = torch.from_numpy(self.keep_mask(input_ids[row, self.start:].tolist(), scores.shape[1], must_end,
                                                   may_end))
            scores[row] = scores[row].masked_fill(~keep, float("-inf"))
        return scores
