from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from data import STORIES_DIR
from data.build import BuildOptions, build_dataset, split_stories, story_steps, write_build
from data.steps import read_steps
from data.validation import load_stories, validate_story_data
from engine.story import Story
from tests.stories import story_dict


def make_story(story_id: str = "moon_shrine", genre: str = "yokai_horror", **scene_texts: str) -> Story:
    data = story_dict(story_id, genre)
    for scene in data["scenes"]:
        scene["text"] = scene_texts.get(scene["id"], scene["text"])
    report = validate_story_data(data, "test", file_stem=story_id)
    assert report.issues == [] and report.story is not None
    return report.story


def many_stories(count: int) -> list[Story]:
    return [make_story(f"story_{n:02d}") for n in range(count)]


def test_one_step_per_edge_with_the_path_so_far() -> None:
    steps = {step.id: step for step in story_steps(make_story())}
    assert sorted(steps) == sorted(["moon_shrine/s1>s2", "moon_shrine/s1>s3", "moon_shrine/s2>s4", "moon_shrine/s2>s5",
                                    "moon_shrine/s4>s6", "moon_shrine/s4>s7", "moon_shrine/s6>s8", "moon_shrine/s6>s9"])
    deep = steps["moon_shrine/s6>s8"]
    assert [(h.scene.split(".")[0], h.chosen) for h in deep.history] == [("Scene s1", 0), ("Scene s2", 0), ("Scene s4", 0)]
    assert deep.action == "Promise the fox a song at dawn"
    assert deep.next_choices == [] and deep.ending == "good"
    assert steps["moon_shrine/s1>s2"].history == []
    assert steps["moon_shrine/s1>s2"].next_choices == ["Climb the moss-covered shrine steps", "Hide behind the sake barrels"]
    assert deep.lore == ["Hana-chan is the shrine keeper's granddaughter.", "The fox spirit keeps every promise."]


def test_text_is_normalised_but_never_lower_cased() -> None:
    decomposed = unicodedata.normalize("NFD", "Kōryō")
    text = f"  Hana-chan   bows to  {decomposed}-sensei.\r\n\r\n  \"Welcome!\" " + " word" * 40
    step = next(s for s in story_steps(make_story(s2=text)) if s.id == "moon_shrine/s1>s2")
    assert step.next_scene.startswith('Hana-chan bows to Kōryō-sensei.\n"Welcome!" word')
    assert unicodedata.is_normalized("NFC", step.next_scene)


def test_split_is_by_story_and_never_leaks() -> None:
    build = build_dataset(many_stories(40), [], BuildOptions())
    by_split = {split: {step.id.split("/")[0] for step in steps} for split, steps in build.splits.items()}
    assert by_split["train"] and by_split["validation"] and by_split["test"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["validation"] & by_split["test"]
    assert sum(len(s) for s in build.splits.values()) == 40 * 8


def test_adding_stories_never_moves_an_old_story() -> None:
    options = BuildOptions(seed=7)
    before = split_stories([f"story_{n}" for n in range(50)], options)
    after = split_stories([f"story_{n}" for n in range(80)], options)
    assert all(after[story] == split for story, split in before.items())


def test_another_seed_gives_another_split() -> None:
    ids = [f"story_{n}" for n in range(50)]
    assert split_stories(ids, BuildOptions(seed=1)) != split_stories(ids, BuildOptions(seed=2))


def test_tiny_datasets_still_get_validation_and_test() -> None:
    assert sorted(split_stories(["a", "b", "c"], BuildOptions()).values()) == ["test", "train", "validation"]


def test_build_is_deterministic_and_content_addressed() -> None:
    first = build_dataset(many_stories(12), [], BuildOptions())
    second = build_dataset(list(reversed(many_stories(12))), [], BuildOptions())
    assert first.digest == second.digest
    assert first.split_jsonl("train") == second.split_jsonl("train")
    changed = many_stories(12)
    changed[3] = make_story("story_03", s7=changed[3].scene("s7").text.replace("Lanterns", "Paper lanterns"))
    assert build_dataset(changed, [], BuildOptions()).digest != first.digest
    assert build_dataset(many_stories(12), [], BuildOptions(seed=99)).digest != first.digest


def test_written_splits_read_back_as_valid_steps(tmp_path: Path) -> None:
    build = build_dataset(many_stories(10), [], BuildOptions())
    out = write_build(build, tmp_path)
    assert out == tmp_path / build.digest
    for split, steps in build.splits.items():
        assert read_steps(out / f"{split}.jsonl") == (steps, [])
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["digest"] == build.digest
    assert meta["stats"]["examples"] == 80
    assert sorted(s for ids in meta["splits"].values() for s in ids) == [f"story_{n:02d}" for n in range(10)]


def test_statistics() -> None:
    build = build_dataset(many_stories(3), [], BuildOptions())
    stats = build.stats
    assert (stats["stories"], stats["scenes"], stats["genres"], stats["choices"], stats["endings"]) == (3, 27, 1, 24, 15)
    assert stats["scenes_with_2_choices"] == 12 and stats["endings_good"] == 3
    assert stats["mean_choice_words"] == pytest.approx(sum([7, 5, 5, 5, 6, 6, 7, 6]) / 8, abs=0.01)
    assert stats["examples_train"] + stats["examples_validation"] + stats["examples_test"] == 24


def test_bundled_dataset_builds() -> None:
    stories, issues = load_stories(STORIES_DIR)
    assert issues == []
    build = build_dataset(stories, [], BuildOptions())
    assert all(build.splits[split] for split in ("train", "validation", "test"))
    assert build.stats["examples"] == build.stats["choices"]
