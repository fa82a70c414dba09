from __future__ import annotations

import pytest

from data import text_quality


def test_invented_words_are_found_and_real_ones_are_not() -> None:
    # The starter model's first scene (issue 10) against a scene of the bundled stories.
    broken = ("'clock sharply face, and the loted from a long moment, where old woman, his eyes are already metth. "
              "The Silver Crane Night Praps for a sports like a falontivator who is the next morning.")
    _, total, found = text_quality.invented_words([broken])
    assert found == ["metth", "falontivator"] and total > 20
    good = ("You realise the rooftop garden smells of rain. Hana-chan hums her favourite song while the ramen "
            "stall's lanterns flicker; you're stopping, running, worried, happier and quietly recognised.")
    assert text_quality.invented_words([good])[0] == 0
    assert text_quality.invented_word_rate([]) == 0.0


@pytest.mark.parametrize(("text", "expected"), [
    ("You step into the hall and your boots squeak.", True),
    ("She steps into the hall. He follows.", False),
])
def test_second_person(text: str, expected: bool) -> None:
    assert text_quality.second_person(text) is expected


def test_present_share_reads_the_players_verbs() -> None:
    assert text_quality.present_share("You open the door. You hear rain. You were late.") == 1.0
    assert text_quality.present_share("You opened the door and you saw her.") == 0.0
    assert text_quality.present_share("The door opens.") is None


@pytest.mark.parametrize(("choice", "expected"), [
    ("Climb the shrine steps", True), ("Ask Hana-chan what she heard", True), ("You climb", False),
    ("The shrine steps", False), ("Running away", False), ("Sh", True),
])
def test_imperative(choice: str, expected: bool) -> None:
    assert text_quality.imperative(choice) is expected


def test_repeated_ngrams_find_looping_text() -> None:
    assert text_quality.repeated_ngram_rate("a b c d a b c d", 4) == pytest.approx(1 / 5)
    assert text_quality.repeated_ngram_rate("one two three", 4) == 0.0
    sentence = "You climb the ladder while the rain drums on the glass. "
    assert text_quality.repeated_ngram_rate(sentence * 3, 3) > 0.5


def test_run_together_words_are_found_in_any_case() -> None:
    # The untrained SmolLM2's openings (README): names run together in CamelCase, which invented_words (lower-case
    # words only) does not see.
    text = "AnImatakeHellOakLawnShatterInTheTownBellsIf You're a Shaman. McAllister meets Hana-chan at the kotatsu."
    assert text_quality.run_together_words(text) == ["AnImatakeHellOakLawnShatterInTheTownBellsIf"]
    assert text_quality.run_together_words("counterrevolutionaries and OverallAllTypeAndLevel") == [
        "OverallAllTypeAndLevel"]
    assert text_quality.run_together_words("x" * 25) == ["x" * 25]
