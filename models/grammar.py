"""Constrained decoding: the model samples freely, but only answers that parse can come out.

A small model trained on a thousand scenes writes fair prose long before it reliably closes a scene with
2-4 choices; a malformed answer costs the engine a retry. ``SceneGrammar`` is a logits processor that
follows the answer's grammar token by token and masks what would break it::

    <|scene|> narration (min..max tokens) ( <|choices|> (<|choice|> text){2,4} | <|ending|> kind ) <|end|>

Within those rules the model's own distribution decides everything: how long the narration runs, whether
the scene ends, how many choices and what they say. Evaluation reports the parse rate with and without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from engine.prompt_format import CHOICE, CHOICES, END, ENDING, SCENE, SPECIAL_TOKENS
from engine.story import EndingKind
from models.tokenizer import token_id


@dataclass(frozen=True)
class GrammarLimits:
    min_narration: int = 24  # tokens before the scene may close
    max_choice_tokens: int = 24
    # A choice is an action, not a fragment: "Sh" (one token) can never close; the engine's check wants 2 words.
    min_choice_tokens: int = 3
    min_choices: int = 2
    max_choices: int = 4


class SceneGrammar(LogitsProcessor):
    def __init__(self, tokenizer: PreTrainedTokenizerBase, start: int, max_new_tokens: int,
                 limits: GrammarLimits = GrammarLimits(), must_end: list[bool] | None = None,
                 may_end: list[bool] | None = None) -> None:
        self.start = start
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
        # Room kept at the end of the narration for the choices: two of about ten tokens, and their markers.
        self.reserve = 2 * 10 + 4

    def allowed(self, generated: list[int], must_end: bool = False,
                may_end: bool = True) -> tuple[set[int] | None, set[int]]:
        """(only these tokens, or None for any text token) and the markers allowed besides. ``must_end``:
        the scene can only close with an ending; ``may_end`` false: only with choices."""
        remaining = self.max_new_tokens - len(generated)
        if not generated:
            return set(), {self.scene}
        if self.end in generated:
            return set(), {self.end}
        if self.ending in generated:
            return self._ending(generated[generated.index(self.ending) + 1:])
        if self.choices in generated:
            return self._choices(generated[generated.index(self.choices) + 1:], remaining)
        narration = len(generated) - 1
        if narration < self.limits.min_narration:
            return None, set()
        closers = {self.ending} if must_end else {self.choices, self.ending} if may_end else {self.choices}
        if remaining <= self.reserve:
            return set(), closers
        return None, closers

    def _choices(self, after: list[int], remaining: int) -> tuple[set[int] | None, set[int]]:
        if not after:
            return set(), {self.choice}
        count = after.count(self.choice)
        since = len(after) - 1 - max(i for i, t in enumerate(after) if t == self.choice)
        if since == 0:  # a choice needs at least one token of text
            return None, set()
        closing = {self.choice} if count < self.limits.max_choices else set()
        if count >= self.limits.min_choices:
            closing.add(self.end)
        # Tokens still needed after this one: <|end|>, and a marker plus a short choice for each missing one.
        needed = 1 + (1 + self.limits.min_choice_tokens) * max(0, self.limits.min_choices - count)
        out_of_room = remaining - 1 <= needed or since >= self.limits.max_choice_tokens
        if out_of_room and count >= self.limits.min_choices:
            return set(), {self.end}
        if out_of_room:
            return set(), {self.choice}
        if since < self.limits.min_choice_tokens:
            return None, set()
        return None, closing

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
        else:
            keep = np.zeros(size, dtype=bool)
            only = only | allowed_markers
        keep[list(allowed_markers if only is None else only)] = True
        return keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            must_end = row < len(self.must_end) and self.must_end[row]
            may_end = row >= len(self.may_end) or self.may_end[row]
            keep = torch.from_numpy(self.keep_mask(input_ids[row, self.start:].tolist(), scores.shape[1], must_end,
                                                   may_end))
            scores[row] = scores[row].masked_fill(~keep, float("-inf"))
        return scores
