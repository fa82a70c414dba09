"""A storyteller that writes through llama.cpp (``models.fast_decoder``) with the transformers path's rules.

``FastStoryteller`` has the ``write`` of ``models.storyteller.Storyteller`` (same prompts, grammar, sampling
preset and answer decoding), plus ``on_text``: a callback that sees each answer grow, token by token, for the
frontends that stream the cold path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from engine.prompt_format import StoryContext
from models.config import Sampling
from models.examples import generation_prompts
from models.fast_decoder import Job, LlamaCppModel
from models.grammar import SceneGrammar
from models.sampling import next_token
from models.storyteller import Storyteller

TextCallback = Callable[[int, str], None]  # (row, the answer so far)


class FastStoryteller:
    def __init__(self, storyteller: Storyteller, model: LlamaCppModel, gguf_note: str = "") -> None:
        self.storyteller = storyteller
        self.model = model
        self.gguf_note = gguf_note  # what was converted, for logs and the model version's tags
        self._grammars: dict[int, SceneGrammar] = {}

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
        """Write every context (more than the slots: each joins as a slot frees) and wait for all of them."""
        return [answer.result() for answer in self.begin(contexts, sampling, seed, must_end, may_end, on_text)]

    def begin(self, contexts: Sequence[StoryContext], sampling: Sampling | None = None, seed: int | None = None,
              must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
              on_text: TextCallback | None = None) -> list[Future[str]]:
        """Start writing every context and return at once: one future answer each. Calls may overlap: a
        scene joins the ones being written as soon as a slot frees (cancel its future to take it out)."""
        sampling = sampling or self.sampling
        teller = self.storyteller
        prompts = generation_prompts(teller.tokenizer, contexts, teller.window, sampling.max_new_tokens, False)
        return self.generate(prompts, sampling, seed, must_end, may_end, on_text)

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling, seed: int | None = None,
                 must_end: Sequence[bool] | None = None, may_end: Sequence[bool] | None = None,
                 on_text: TextCallback | None = None) -> list[Future[str]]:
        teller = self.storyteller
        ends = list(must_end) if must_end is not None else [False] * len(prompts)
        opens = list(may_end) if may_end is not None else [True] * len(prompts)
        grammar = self._grammar(sampling.max_new_tokens)
        reusable_until = frozenset({grammar.choices, grammar.ending})
        answers: list[Future[str]] = []
        for row, prompt in enumerate(prompts):
            # A generator per row, so a seed replays each scene whatever else is being written beside it.
            rng = np.random.default_rng(None if seed is None else [seed, row])
            pick = self._picker(list(prompt), sampling, grammar, ends[row], opens[row], rng,
                                None if on_text is None else functools.partial(on_text, row))
            job = Job(list(prompt), pick, sampling.max_new_tokens, teller.end_id, reusable_until, teller.decode_answer)
            answers.append(self.model.submit(job))
        return answers

    def _grammar(self, max_new_tokens: int) -> SceneGrammar:
        """One grammar per answer length (building one reads the whole vocabulary; the rows pass their own
        must/may-end flags to it)."""
        grammar = self._grammars.get(max_new_tokens)
        if grammar is None:
            grammar = self._grammars[max_new_tokens] = SceneGrammar(self.storyteller.tokenizer, 0, max_new_tokens)
        return grammar

    def _picker(self, prompt: list[int], sampling: Sampling, grammar: SceneGrammar, must_end: bool, may_end: bool,
                rng: np.random.Generator, on_text: Callable[[str], None] | None) -> Callable[[np.ndarray], int]:
        teller = self.storyteller
        written: list[int] = []
        seen = prompt

        def pick(logits: np.ndarray) -> int:
            keep = grammar.keep_mask(written, logits.shape[0], must_end, may_end) if sampling.constrained else None
            token = next_token(logits, np.asarray(seen), sampling, rng, keep)
            written.append(token)
            seen.append(token)
            if on_text is not None:
                on_text(teller.decode_answer(written))
            return token
        return pick
