from __future__ import annotations

from models.grammar import SceneGrammar
from models.tokenizer import train_tokenizer


def test_a_choice_cannot_close_before_it_has_a_few_tokens() -> None:
    tokenizer = train_tokenizer(["Climb the shrine steps and listen.", "Ask her what she heard."] * 20, 300)
    grammar = SceneGrammar(tokenizer, 0, max_new_tokens=200)
    ids = {marker: tokenizer.convert_tokens_to_ids(marker) for marker in ("<|scene|>", "<|choices|>", "<|choice|>",
                                                                         "<|end|>")}
    word = tokenizer("Climb", add_special_tokens=False)["input_ids"][0]
    so_far = [ids["<|scene|>"], *[word] * 30, ids["<|choices|>"], ids["<|choice|>"], word]
    only, markers = grammar.allowed(so_far)
    assert only is None and markers == set()  # "Sh": one token, no closing yet
    only, markers = grammar.allowed([*so_far, word, word])
    assert markers == {ids["<|choice|>"]}  # three tokens: the next choice may start (not the end: one choice)
    second = [*so_far, word, word, ids["<|choice|>"], word, word, word]
    assert grammar.allowed(second)[1] == {ids["<|choice|>"], ids["<|end|>"]}
    # Out of room, a choice is closed whatever its length: the answer must still end.
    assert grammar.allowed(second, must_end=False)[1] and SceneGrammar(tokenizer, 0, len(second) + 1).allowed(
        second)[1] == {ids["<|end|>"]}
