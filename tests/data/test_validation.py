from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data import STORIES_DIR
from data.validation import load_stories, validate_story_data, validate_story_file
from tests.stories import choice, scene_text, story_dict, write_story

Mutation = Callable[[dict[str, Any]], None]


def scene(data: dict[str, Any], scene_id: str) -> dict[str, Any]:
    return next(s for s in data["scenes"] if s["id"] == scene_id)


def set_next(scene_id: str, index: int, target: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        scene(data, scene_id)["choices"][index]["next"] = target
    return mutate


def two(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)
    return mutate


# (name, mutation, every message expected for the file, in order; P is the file's path)
BAD_STORIES: list[tuple[str, Mutation, list[str]]] = [
    ("unknown scene", set_next("s1", 1, "s99"), [
        "P: story moon_shrine, scene s1, choices[1]: leads to unknown scene 's99'",
        "P: story moon_shrine, scene s3: not reachable from the opening scene s1",
    ]),
    ("unknown genre", lambda d: d.update(genre="pirates"), [
        "P: story moon_shrine, genre: unknown genre 'pirates' (known: cooking, cultivation, cyberpunk, fantasy, "
        "gaming_isekai, idol, magic_school, mecha, mystery, romcom, samurai, slice_of_life, space_opera, sports, "
        "survival, time_loop, yokai_horror)",
    ]),
    ("duplicate scene id", lambda d: scene(d, "s9").update(id="s8"), [
        "P: story moon_shrine, scene s8, id: duplicate scene id (also used by scenes[7])",
        "P: story moon_shrine, scene s6, choices[1]: leads to unknown scene 's9'",
    ]),
    ("cycle", set_next("s6", 0, "s2"), [
        "P: story moon_shrine, scene s6, choices[0]: leads back to 's2', making a cycle s2 -> s4 -> s6 -> s2",
        "P: story moon_shrine, scene s8: not reachable from the opening scene s1",
    ]),
    ("one choice", lambda d: scene(d, "s2")["choices"].pop(), [
        "P: story moon_shrine, scene s2, choices: 1 choice(s), needs 2-4",
        "P: story moon_shrine, scene s5: not reachable from the opening scene s1",
    ]),
    ("five choices", lambda d: scene(d, "s1")["choices"].extend(
        [choice("Dance with the masked stranger", "s3"), choice("Buy a candied apple first", "s3"),
         choice("Call your sister on the phone", "s3")]), [
        "P: story moon_shrine, scene s1, choices: 5 choice(s), needs 2-4",
    ]),
    ("scene too short", lambda d: scene(d, "s4").update(text="You run up the steps. The fox waits."), [
        "P: story moon_shrine, scene s4, text: 8 words, needs 40-130",
    ]),
    ("scene too long", lambda d: scene(d, "s7").update(text=" ".join([scene_text("s7")] * 3)), [
        "P: story moon_shrine, scene s7, text: 171 words, needs 40-130",
    ]),
    ("choice too short", lambda d: scene(d, "s2")["choices"][1].update(text="Hide"), [
        "P: story moon_shrine, scene s2, choices[1]: 1 words ('Hide'), needs 3-14",
    ]),
    ("repeated choice", lambda d: scene(d, "s4")["choices"][1].update(text="offer the fox your warm charm."), [
        "P: story moon_shrine, scene s4, choices[1]: repeats choices[0] ('offer the fox your warm charm.'); "
        "choices must differ",
    ]),
    ("ending with choices", lambda d: scene(d, "s5").update(choices=[choice("Try the gate again now", "s3")]), [
        "P: story moon_shrine, scene s5: an ending has no choices",
    ]),
    ("dead end", lambda d: scene(d, "s5").update(ending=False, ending_kind=None), [
        "P: story moon_shrine, scene s5: a scene needs choices, or ending: true with an ending_kind",
    ]),
    ("bad ending kind", lambda d: scene(d, "s8").update(ending_kind="great"), [
        "P: story moon_shrine, scene s8, ending_kind: input should be 'good', 'bad' or 'neutral'",
    ]),
    ("missing title", lambda d: d.pop("title"), [
        "P: story moon_shrine, title: missing (required)",
    ]),
    ("unknown field", lambda d: scene(d, "s3").update(colour="red"), [
        "P: story moon_shrine, scene s3, colour: unknown field (check the spelling)",
    ]),
    ("shallow", two(set_next("s2", 0, "s7"), lambda d: d["scenes"].__delitem__(slice(3, 4)),
                    lambda d: [d["scenes"].remove(scene(d, s)) for s in ("s6", "s8", "s9")]), [
        "P: story moon_shrine, scenes: the longest path from s1 takes 2 choice(s); main branches need at least 4",
    ]),
    ("two-sentence premise", lambda d: d.update(premise="A fox steals the moon. You must get it back."), [
        "P: story moon_shrine, premise: must be exactly one sentence ending in . ! or ?",
    ]),
    ("empty lore", lambda d: d.update(lore=[]), [
        "P: story moon_shrine, lore: 0 facts, needs 1-8",
    ]),
    ("text not a string", lambda d: scene(d, "s9").update(text=42), [
        "P: story moon_shrine, scene s9, text: input should be a valid string",
    ]),
    ("many at once", two(set_next("s4", 1, "s42"), lambda d: d.update(genre="western"),
                         lambda d: scene(d, "s6")["choices"][0].update(text="Go")), [
        "P: story moon_shrine, genre: unknown genre 'western' (known: cooking, cultivation, cyberpunk, fantasy, "
        "gaming_isekai, idol, magic_school, mecha, mystery, romcom, samurai, slice_of_life, space_opera, sports, "
        "survival, time_loop, yokai_horror)",
        "P: story moon_shrine, scene s6, choices[0]: 1 words ('Go'), needs 3-14",
        "P: story moon_shrine, scene s4, choices[1]: leads to unknown scene 's42'",
        "P: story moon_shrine, scene s7: not reachable from the opening scene s1",
    ]),
]


def test_the_fixture_story_is_valid(tmp_path: Path) -> None:
    report = validate_story_file(write_story(tmp_path, story_dict()))
    assert report.issues == []
    assert report.story is not None and report.story.root.id == "s1"


@pytest.mark.parametrize(("mutation", "expected"), [case[1:] for case in BAD_STORIES],
                         ids=[case[0] for case in BAD_STORIES])
def test_bad_story_reports_every_problem_with_its_location(
    tmp_path: Path, mutation: Mutation, expected: list[str]
) -> None:
    data = story_dict()
    mutation(data)
    path = write_story(tmp_path, data)
    report = validate_story_file(path)
    assert [str(issue) for issue in report.issues] == [line.replace("P", str(path), 1) for line in expected]
    assert report.story is None


@pytest.mark.parametrize(("content", "expected"), [
    ('{"id": "moon_shrine",\n "genre": }', "P: invalid JSON at line 2, column 11: Expecting value"),
    ("[1, 2]", "P: the top level must be a JSON object, not list"),
    (b"\xff\xfe{}", "P: not UTF-8 text (invalid start byte at byte 0)"),
])
def test_unreadable_file(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "moon_shrine.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    assert [str(issue) for issue in validate_story_file(path).issues] == [expected.replace("P", str(path), 1)]


def test_file_must_be_named_after_the_story(tmp_path: Path) -> None:
    path = write_story(tmp_path, story_dict(), name="moon")
    assert [str(i) for i in validate_story_file(path).issues] == [
        f"{path}: story moon_shrine, id: the file must be named moon_shrine.json (it is moon.json)"
    ]


def test_two_files_with_one_story_id(tmp_path: Path) -> None:
    write_story(tmp_path / "a", story_dict())
    write_story(tmp_path / "b", story_dict())
    stories, issues = load_stories(tmp_path)
    assert len(stories) == 2
    assert [str(i) for i in issues] == [
        f"{tmp_path / 'b' / 'moon_shrine.json'}: story moon_shrine, id: story id also used by "
        f"{tmp_path / 'a' / 'moon_shrine.json'}"
    ]


def test_a_merge_of_two_branches_is_allowed(tmp_path: Path) -> None:
    data = story_dict()
    scene(data, "s2")["choices"][1]["next"] = "s3"
    data["scenes"].remove(scene(data, "s5"))
    assert validate_story_data(data, "x", file_stem="moon_shrine").issues == []


# --- the bundled dataset -------------------------------------------------------------------------
BUNDLED = sorted(STORIES_DIR.glob("*.json"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_every_bundled_story_validates(path: Path) -> None:
    assert [str(issue) for issue in validate_story_file(path).issues] == []


def test_the_bundled_dataset_meets_its_targets() -> None:
    stories, issues = load_stories(STORIES_DIR)
    assert issues == []
    scenes = [s for story in stories for s in story.scenes]
    per_scene = Counter(len(s.choices) for s in scenes if not s.ending)
    assert len(stories) >= 60
    assert len({story.genre for story in stories}) >= 12
    assert len(scenes) >= 1000
    # 2, 3 and 4 choices are all common: each is at least a tenth of the branching scenes.
    branching = sum(per_scene.values())
    assert all(per_scene[n] >= branching / 10 for n in (2, 3, 4)), per_scene
    # every ending kind occurs, and every story has a good ending
    assert all(any(s.ending_kind == "good" for s in story.scenes) for story in stories)


def test_bundled_stories_name_no_franchise() -> None:
    banned = ["naruto", "pikachu", "pokémon", "pokemon", "gundam", "evangelion", "sailor moon", "one piece",
              "totoro", "hogwarts", "dragon ball", "sword art online", "hatsune miku", "studio ghibli"]
    for path in BUNDLED:
        text = json.dumps(json.loads(path.read_text(encoding="utf-8")), ensure_ascii=False).lower()
        assert not [name for name in banned if name in text], path
