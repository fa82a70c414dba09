"""A storyteller that writes through llama.cpp (``models.fast_decoder``) with the transformers path's rules.

``FastStoryteller`` has the ``write`` of ``models.storyteller.Storyteller`` (same prompts, grammar, sampling
preset and answer decoding), plus ``on_text``: a callback that sees each answer grow, token by token, for the
frontends that stream the cold path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.prompt_format import StoryContext
from models.config import Sampling
from models.examples import generation_prompts
from models.fast_decoder import LlamaCppModel
from models.grammar import SceneGrammar
from models.sampling import next_token
from models.storyteller import Storyteller

TextCallback = Callable[[int, str], None]  # (row, the answer so far)


class FastStoryteller:
    def __init__(self, storyteller: Storyteller, model: LlamaCppModel, gguf_note: str = "") -> None:
        self.storyteller = storyteller
        self.model = model
        self.gguf_note = gguf_note  # what was converted, for logs and the model version's tags

    @property
    def version(self) -> str:
        return self.storyteller.version

    @version.setter
    def version(self, value: str) -> None:
        self.storyteller.version = value

    @property
    def sampling(self) -> Sampling:
        return self.storyteller.sampling

    @property
    def slots(self) -> int:
        return self.model.slots

    def write(self, contexts: Sequence[StoryContext], sampling: Sampling | None = None, seed: int | None = None,
              must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
              on_text: TextCallback | None = None) -> list[str]:
        sampling = sampling or self.sampling
        teller = self.storyteller
        prompts = generation_prompts(teller.tokenizer, contexts, teller.window, sampling.max_new_tokens, False)
        answers: list[str] = []
        for start in range(0, len(prompts), self.model.slots):  # more rows than slots: in turns
            part = slice(start, start + self.model.slots)
            answers += self.generate(prompts[part], sampling, seed,
                                     list(must_end)[part] if must_end is not None else None,
                                     list(may_end)[part] if may_end is not None else None,
                                     _shifted(on_text, start))
        return answers

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling, seed: int | None = None,
                 must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
                 on_text: TextCallback | None = None) -> list[str]:
        teller = self.storyteller
        ends = list(must_end) if must_end is not None else [False] * len(prompts)
        opens = list(may_end) if may_end is not None else [True] * len(prompts)
        grammar = SceneGrammar(teller.tokenizer, 0, sampling.max_new_tokens, must_end=ends, may_end=opens)
        rng = np.random.default_rng(seed)
        written: list[list[int]] = [[] for _ in prompts]
        seen = [list(prompt) for prompt in prompts]

        def pick(row: int, logits: np.ndarray) -> int:
            keep = (grammar.keep_mask(written[row], logits.shape[0], ends[row], opens[row])
                    if sampling.constrained else None)
            token = next_token(logits, np.asarray(seen[row]), sampling, rng, keep)
            written[row].append(token)
            seen[row].append(token)
            if on_text is not None:
                on_text(row, teller.decode_answer(written[row]))
            return token

        tokens = self.model.run(prompts, pick, sampling.max_new_tokens, teller.end_id)
        return [teller.decode_answer(row) for row in tokens]


def _shifted(on_text: TextCallback | None, start: int) -> TextCallback | None:
    if on_text is None or start == 0:
        return on_text
    return lambda row, text: on_text(row + start, text)
