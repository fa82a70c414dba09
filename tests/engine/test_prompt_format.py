from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import MalformedOutputError
from engine.prompt_format import (
    SPECIAL_TOKENS,
    StoryContext,
    Turn,
    fit_context,
    parse_output,
    render_prompt,
    render_target,
)
from engine.story import EndingKind

CONTEXT = StoryContext(
    "mecha", "A pilot must stop a rogue machine.", ("Aoi-senpai leads the squad.", "The hangar is under the sea."),
    "", (Turn("You wake in the cockpit.", "Start the engine"), Turn("Alarms blare.", "Call Aoi-senpai")),
)


def test_prompt_layout() -> None:
    assert render_prompt(CONTEXT) == (
        "<|genre|>mecha<|premise|>A pilot must stop a rogue machine.<|lore|>Aoi-senpai leads the squad.\n"
        "The hangar is under the sea.<|history|><|scene|>You wake in the cockpit.<|action|>Start the engine"
        "<|scene|>Alarms blare.<|action|>Call Aoi-senpai"
    )
    assert render_prompt(StoryContext("idol", "Sing.")) == "<|genre|>idol<|premise|>Sing."


def test_targets_parse_back() -> None:
    scene = parse_output(render_target("The hatch opens.", ["Jump out", "Stay inside", "Radio the base"], None))
    assert scene.narration == "The hatch opens." and scene.choices == ("Jump out", "Stay inside", "Radio the base")
    ending = parse_output(render_target("You save the city.", [], "good"))
    assert ending.is_ending and ending.ending == EndingKind.GOOD and ending.choices == ()


# A corpus of malformed outputs (shapes seen from the tiny and small models while they were learning).
MALFORMED = [
    ("<|scene|>The door creaks open and you step", "no <|end|> marker (the output was cut off or never finished)"),
    ("<|scene|>You run.<|end|>", "neither <|choices|> nor <|ending|>"),
    ("<|scene|>You run.<|choices|><|choice|>Hide<|end|>", "1 choice(s), needs 2-4"),
    ("<|scene|>You run.<|choices|><|choice|>A<|choice|>B<|choice|>C<|choice|>D<|choice|>E<|end|>",
     "5 choice(s), needs 2-4"),
    ("<|scene|>You run.<|choices|><|choice|>Hide<|choice|>hide<|end|>", "repeated choices"),
    ("<|scene|><|choices|><|choice|>Hide<|choice|>Run<|end|>", "no narration"),
    ("<|scene|>You run.<|ending|>great<|end|>", "unknown ending kind 'great'"),
    ("<|scene|>You run.<|choices|><|choice|>Hide<|choice|>Run<|ending|>bad<|end|>", "both choices and an ending"),
    ("<|scene|>You run.<|scene|>Again.<|choices|><|choice|>Hide<|choice|>Run<|end|>", "more than one scene in one answer"),
    ("<|scene|>You run<|action|>away.<|choices|><|choice|>Hide<|choice|>Run<|end|>",
     "a story marker inside the narration"),
    ("<|scene|>You run.<|choices|><|choice|>Hide<|lore|><|choice|>Run<|end|>", "a story marker inside a choice"),
]


@pytest.mark.parametrize(("text", "reason"), MALFORMED, ids=[reason for _, reason in MALFORMED])
def test_malformed_outputs_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(MalformedOutputError) as caught:
        parse_output(text)
    assert caught.value.reason == reason
    assert caught.value.text == text


def test_parser_tolerates_numbering_and_text_after_end() -> None:
    scene = parse_output("You run.<|choices|><|choice|>1. Hide<|choice|>2) Run away<|end|><|scene|>junk")
    assert scene.choices == ("Hide", "Run away")


plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda t: t.strip() and not any(m in t for m in SPECIAL_TOKENS) and "<|" not in t and "|>" not in t)


# Choices start with a letter, as real ones do (a leading "1." or "-" is read as numbering).
choice_text = st.builds(lambda first, rest: first + rest, st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), plain)


@given(plain, st.lists(choice_text, min_size=2, max_size=4, unique_by=lambda t: t.strip().casefold()))
def test_any_rendered_scene_parses_to_itself(narration: str, choices: list[str]) -> None:
    parsed = parse_output(render_target(narration, choices, None))
    assert parsed.narration == narration.strip()
    assert parsed.choices == tuple(c.strip() for c in choices)


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_fit_context_drops_oldest_turns_then_summary_then_lore() -> None:
    context = StoryContext("mecha", "P.", ("lore one", "lore two"), "summary words",
                           tuple(Turn(words(20), f"act {i}") for i in range(5)))
    count = lambda text: len(text.split())  # noqa: E731
    fitted = fit_context(context, count, 50)
    assert count(render_prompt(fitted)) <= 50
    assert fitted.path[-1] == context.path[-1] and len(fitted.path) == 2
    last_only = replace(context, path=context.path[-1:])
    kept = fit_context(context, count, count(render_prompt(last_only)))
    assert kept == last_only  # old turns go before the summary
    no_summary = replace(last_only, summary="")
    assert fit_context(context, count, count(render_prompt(no_summary))) == no_summary  # summary before lore
    tiny = fit_context(context, count, 12)
    assert tiny.lore == () and tiny.path[-1].action == "act 4" and count(render_prompt(tiny)) <= 12


# Real malformed answers of the starter model sampled without the grammar (cyoa evaluate --unconstrained),
# each with the reason the parser gave when it was collected.
CORPUS = [json.loads(line) for line in
          (Path(__file__).parent / "malformed_outputs.jsonl").read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("row", CORPUS, ids=[f"{r['step']}" for r in CORPUS])
def test_real_malformed_outputs_are_refused_for_their_reason(row: dict[str, str]) -> None:
    with pytest.raises(MalformedOutputError) as caught:
        parse_output(row["text"])
    assert caught.value.reason == row["reason"]


def test_the_corpus_covers_the_usual_failures() -> None:
    assert len(CORPUS) >= 10
    assert {row["reason"] for row in CORPUS} >= {"more than one scene in one answer",
                                                  "neither <|choices|> nor <|ending|>"}
