from __future__ import annotations

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from engine.checks import dangling
from engine.prompt_format import parse_output
from models.grammar import GrammarLimits, SceneGrammar
from models.tokenizer import train_tokenizer

CORPUS = ["You climb the shrine steps and listen. The bell rings twice!", "Ask her what she heard, then run.",
          "Let Kanpei take the lantern to the old gate?", "The rain falls on the roof of the dojo."]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(CORPUS * 20, 400)


def ids_of(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def marker(tokenizer: PreTrainedTokenizerFast, name: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(f"<|{name}|>"))


def narration(tokenizer: PreTrainedTokenizerFast, sentences: int = 4) -> list[int]:
    return ids_of(tokenizer, " ".join(["You climb the shrine steps and listen."] * sentences))


def test_a_choice_closes_only_as_three_words_that_do_not_stop_mid_phrase(tokenizer: PreTrainedTokenizerFast) -> None:
    grammar = SceneGrammar(tokenizer, 0, max_new_tokens=200)
    choice, end = marker(tokenizer, "choice"), marker(tokenizer, "end")
    head = [marker(tokenizer, "scene"), *narration(tokenizer), marker(tokenizer, "choices"), choice]
    assert grammar.allowed([*head, *ids_of(tokenizer, "Sh")]) == (None, set())  # a fragment cannot close
    assert grammar.allowed([*head, *ids_of(tokenizer, "Run to the")]) == (None, set())  # cut off mid-phrase
    # Three whole words: the next choice may start; not the end, since one choice is not a choice.
    assert grammar.allowed([*head, *ids_of(tokenizer, "Climb the steps")]) == (None, {choice})
    second = [*head, *ids_of(tokenizer, "Climb the steps"), choice, *ids_of(tokenizer, "Ask her what she heard")]
    assert grammar.allowed(second) == (None, {choice, end})


def test_a_choice_of_fourteen_words_may_only_finish_its_word_or_close(tokenizer: PreTrainedTokenizerFast) -> None:
    grammar = SceneGrammar(tokenizer, 0, max_new_tokens=400)
    choice = marker(tokenizer, "choice")
    long = " ".join(["Climb the steps and listen"] * 2 + ["Climb the steps listen"])  # 14 words
    so_far = [marker(tokenizer, "scene"), *narration(tokenizer), marker(tokenizer, "choices"), choice,
              *ids_of(tokenizer, long)]
    only, markers = grammar.allowed(so_far)
    assert markers == {choice} and isinstance(only, np.ndarray)
    assert not only[ids_of(tokenizer, " listen")[0]]  # a new word is masked
    assert only[ids_of(tokenizer, ".")[0]]  # a full stop is not
    assert not only[ids_of(tokenizer, ",")[0]]  # nor is a comma, which only leads to more words
    stopped = so_far + ids_of(tokenizer, ".")
    assert grammar.allowed(stopped) == (set(), {choice})  # after the full stop: only the close
    # At thirteen words the fourteenth may be any word but one a choice cannot end on.
    only, _ = grammar.allowed(so_far[:-len(ids_of(tokenizer, " listen"))])
    assert isinstance(only, np.ndarray) and not only[ids_of(tokenizer, " the")[0]] and only[ids_of(tokenizer, " steps")[0]]


def test_the_narration_closes_at_the_end_of_a_sentence(tokenizer: PreTrainedTokenizerFast) -> None:
    choices, ending = marker(tokenizer, "choices"), marker(tokenizer, "ending")
    scene = [marker(tokenizer, "scene"), *narration(tokenizer)]
    mid = [*scene, *ids_of(tokenizer, " You climb the")]
    roomy = SceneGrammar(tokenizer, 0, max_new_tokens=len(scene) + 200)
    assert roomy.allowed(scene) == (None, {choices, ending})  # after a full stop it may close, or go on
    assert roomy.allowed(mid) == (None, set())  # never mid-sentence
    assert roomy.allowed(scene, may_end=False) == (None, {choices})
    # Near the token limit the first full stop closes it, and at the room kept for the choices a sentence
    # that is still open may only be finished.
    limits = GrammarLimits()
    near = SceneGrammar(tokenizer, 0, max_new_tokens=len(scene) + limits.choice_room + 10)
    assert near.allowed(scene) == (set(), {choices, ending})
    tight = SceneGrammar(tokenizer, 0, max_new_tokens=len(mid) + limits.choice_room - 2)
    only, markers = tight.allowed(mid)
    assert markers == set() and isinstance(only, np.ndarray)
    assert only[ids_of(tokenizer, ".")[0]] and only[ids_of(tokenizer, "!")[0]]
    assert not only[ids_of(tokenizer, " steps")[0]]


def test_any_text_the_grammar_lets_through_parses_with_whole_choices(tokenizer: PreTrainedTokenizerFast) -> None:
    """A writer that picks at random among the corpus's tokens the grammar allows (a model with no sense of
    when to stop) still always closes its answer, at every token limit, and its choices are whole, 3-14
    words, not cut off."""
    rng = np.random.default_rng(7)
    size = len(tokenizer)
    known = np.zeros(size, dtype=bool)
    known[[i for text in CORPUS for i in ids_of(tokenizer, " " + text)]] = True
    cut_off, with_choices = 0, 0
    for limit in range(90, 200, 3):
        grammar = SceneGrammar(tokenizer, 0, max_new_tokens=limit)
        written: list[int] = []
        while len(written) < limit and marker(tokenizer, "end") not in written:
            keep = grammar.keep_mask(written, size)
            usable = keep & known if (keep & known).any() else keep
            weights = np.where(usable, rng.random(size), 0.0)
            # A writer that likes to stop: markers are drawn often once allowed.
            markers = [i for i in grammar.markers if keep[i]]
            written.append(int(rng.choice(markers)) if markers and rng.random() < 0.15 else int(weights.argmax()))
        scene = parse_output(tokenizer.decode(written, skip_special_tokens=False))
        if not scene.is_ending:
            assert 2 <= len(scene.choices) <= 4
            with_choices += 1
            cut_off += sum(dangling(choice) or len(choice.split()) < 3 for choice in scene.choices)
    assert cut_off == 0 and with_choices >= 15
