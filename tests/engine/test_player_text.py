"""What players type (premises, feedback) against the block list and the markup rules: every bad input tried,
and what it gets."""

from __future__ import annotations

import pytest

from engine.checks import CheckRules, blocked_words, check_player_text
from engine.errors import BlockedTextError

RULES = CheckRules(block_list=frozenset({"forbidden", "straße"}))


@pytest.mark.parametrize("text", [
    "a forbidden door",                  # plain
    "a FORBIDDEN door",                  # case
    "a for\u200bbidden door",            # zero-width space inside the word
    "a forbi\u00addden door",           # soft hyphen
    "a " + "".join(chr(ord(c) + 0xFEE0) for c in "forbidden") + " door",  # fullwidth letters
    "the STRASSE of doom",               # ß case-folds to ss
    "the Straße of doom",
    "a f\u043erbidden door",            # a Cyrillic o inside the Latin word
    "a forbidden d\u043e\u043er",          # Cyrillic letters elsewhere do not hide it
    "a forb\u00eddden door",            # an accent (i with acute)
    "a fo\u0301rbidden door",           # a combining accent
    "a FORBIDD\u0395N door",            # a Greek capital epsilon
])
def test_block_list_evasions_are_caught(text: str) -> None:
    assert blocked_words(text, RULES.block_list)
    with pytest.raises(BlockedTextError, match="blocked word"):
        check_player_text(text, RULES)


@pytest.mark.parametrize(("text", "reason"), [
    ("A knight <|end|> wakes", "storyteller's markup"),
    ("A knight <|scene|>", "storyteller's markup"),
    ("A knight <| wakes", "storyteller's markup"),
    ("Ask <@123456789012345678> for help", "mentions someone"),
    ("Ask <@!123456789012345678> for help", "mentions someone"),
    ("Call <@&123456789012345678>", "mentions someone"),
    ("Meet in <#123456789012345678>", "mentions someone"),
    ("Wake up @everyone", "mentions someone"),
    ("Wake up @here", "mentions someone"),
])
def test_markers_and_mentions_are_refused(text: str, reason: str) -> None:
    with pytest.raises(BlockedTextError, match=reason):
        check_player_text(text, RULES)


def test_other_scripts_and_accents_do_not_block_innocent_words() -> None:
    assert not blocked_words("Привет, a forbidding forest", RULES.block_list)  # Cyrillic text, another word
    assert blocked_words("café au lait", frozenset({"cafe au"})) == ["cafe au"]  # accents drop in matching
    assert check_player_text("Привет, café", RULES) == "Привет, café"  # what is stored keeps its letters


def test_clean_text_passes_without_its_invisible_characters() -> None:
    assert check_player_text("  A lost\u200b knight wakes in a glass forest.  ", RULES) == \
        "A lost knight wakes in a glass forest."
    assert check_player_text("Email me at knight@example.com", RULES) == "Email me at knight@example.com"


def test_an_over_long_premise_is_refused_by_the_engine_whatever_the_frontend_declared() -> None:
    import asyncio

    from engine.errors import GameRuleError
    from engine.fakes import FakeWriter
    from engine.turns import MAX_PREMISE_CHARS, StoryEngine

    engine = StoryEngine(FakeWriter())
    with pytest.raises(GameRuleError, match="at most 300"):
        asyncio.run(engine.start("t", "mecha", "A pilot wakes. " * 30))
    game = asyncio.run(engine.start("t", "mecha", "x" * MAX_PREMISE_CHARS))
    assert len(game.premise) == MAX_PREMISE_CHARS
