from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.steps import Step, read_steps, steps_to_jsonl, write_steps


def step_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "moon_shrine/s2>s4", "genre": "yokai_horror", "premise": "A fox steals the moon.",
        "history": [{"scene": "The festival begins.", "choices": ["Follow the fox", "Stay home"], "chosen": 0}],
        "scene": "The fox runs up the steps.", "choices": ["Climb the steps", "Hide", "Call for help"],
        "chosen": 0, "next_scene": "At the top, the fox waits.", "next_choices": ["Bow", "Shout"],
    }
    data.update(changes)
    return data


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


BAD_STEPS: list[tuple[str, Any, str]] = [
    ("chosen out of range", step_dict(chosen=3),
     "P: line 1, step moon_shrine/s2>s4: chosen is 3 but there are 3 choices (0-based index)"),
    ("one choice", step_dict(choices=["Climb"], chosen=0),
     "P: line 1, step moon_shrine/s2>s4, choices: 1 choice(s), needs 2-4"),
    ("repeated choice", step_dict(choices=["Climb", "climb "]),
     "P: line 1, step moon_shrine/s2>s4, choices: choice 1 repeats choice 0 ('climb ')"),
    ("one next choice", step_dict(next_choices=["Bow"]),
     "P: line 1, step moon_shrine/s2>s4, next_choices: 1 choice(s), needs 2-4 (or none at an ending)"),
    ("history chosen out of range", step_dict(history=[{"scene": "x", "choices": ["a", "b"], "chosen": -1}]),
     "P: line 1, step moon_shrine/s2>s4, history[0]: chosen is -1 but there are 2 choices "
     "(0-based index)"),
    ("unknown genre", step_dict(genre="western"),
     "P: line 1, step moon_shrine/s2>s4, genre: unknown genre 'western' (known: cooking, cultivation, cyberpunk, "
     "fantasy, gaming_isekai, idol, magic_school, mecha, mystery, romcom, samurai, slice_of_life, space_opera, "
     "sports, survival, time_loop, yokai_horror)"),
    ("missing field", {k: v for k, v in step_dict().items() if k != "next_scene"},
     "P: line 1, step moon_shrine/s2>s4, next_scene: missing (required)"),
    ("string index", step_dict(chosen="0"), "P: line 1, step moon_shrine/s2>s4, chosen: input should be a valid integer"),
    ("ending with choices", step_dict(ending="good"),
     "P: line 1, step moon_shrine/s2>s4: ending is set but next_choices is not empty"),
    ("typo", step_dict(next_choice=[]), "P: line 1, step moon_shrine/s2>s4, next_choice: unknown field (check the spelling)"),
    ("not JSON", '{"id": "x",', "P: line 1: invalid JSON at column 12: Expecting property name enclosed in double quotes"),
    ("not an object", "[1]", "P: line 1: a step must be a JSON object, not list"),
]


@pytest.mark.parametrize(("row", "expected"), [c[1:] for c in BAD_STEPS], ids=[c[0] for c in BAD_STEPS])
def test_bad_step_line(tmp_path: Path, row: Any, expected: str) -> None:
    path = write_lines(tmp_path / "steps.jsonl", [row])
    steps, issues = read_steps(path)
    assert steps == []
    assert [str(i) for i in issues] == [expected.replace("P", str(path), 1)]


def test_every_bad_line_is_reported_and_good_lines_are_kept(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "steps.jsonl", [
        step_dict(id="a"), "", step_dict(id="b", chosen=9), step_dict(id="c"), step_dict(id="a"),
    ])
    steps, issues = read_steps(path)
    assert [s.id for s in steps] == ["a", "c"]
    assert [str(i) for i in issues] == [
        f"{path}: line 3, step b: chosen is 9 but there are 3 choices (0-based index)",
        f"{path}: line 5, step a, id: duplicate id (first used on line 1)",
    ]


def test_an_ending_step_has_no_next_choices(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "steps.jsonl", [step_dict(next_choices=[], ending="bad")])
    steps, issues = read_steps(path)
    assert issues == [] and steps[0].ending == "bad" and steps[0].action == "Climb the steps"


def test_empty_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "steps.jsonl", [])
    assert [str(i) for i in read_steps(path)[1]] == [f"{path}: no steps in the file"]


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
choice_lists = st.lists(texts, min_size=2, max_size=4, unique_by=lambda t: t.strip().casefold())


@given(st.data())
def test_any_valid_step_survives_a_round_trip(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    choices = data.draw(choice_lists)
    next_choices = data.draw(st.one_of(st.just([]), choice_lists))
    step = Step(id=data.draw(texts), genre="mecha", premise=data.draw(texts), scene=data.draw(texts),
                choices=choices, chosen=data.draw(st.integers(0, len(choices) - 1)),
                next_scene=data.draw(texts), next_choices=next_choices, lore=data.draw(st.lists(texts, max_size=3)))
    path = tmp_path_factory.mktemp("steps") / "steps.jsonl"
    write_steps(path, [step])
    assert read_steps(path) == ([step], [])
    assert steps_to_jsonl([step]).count("\n") == 1
