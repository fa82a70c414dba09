from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data.sources import load_source
from engine.errors import SourceError


def node(action: str, result: str, *kids: dict[str, Any]) -> dict[str, Any]:
    return {"action": action, "result": result, "action_results": list(kids)}


def write_tree(folder: Path, tree: dict[str, Any]) -> Path:
    target = folder / "aidungeon-crowdsourced"
    target.mkdir(parents=True)
    (target / "LICENSE").write_text("MIT")
    (target / "crowdsourcedstory0.json").write_text(json.dumps(tree))
    return folder


def test_aidungeon_folds_single_actions_into_narration(tmp_path: Path) -> None:
    tree = {"tree_id": "t", "context": "The bombs fell.", "first_story_block": "You wake up.", "action_results": [
        node("leave the room.", "The hall is dark.",
             node("go left", "A dog growls."), node("go right", "A door opens.",
                                                    node("enter", "Light."), node("knock", "Silence."))),
    ]}
    source = load_source("aidungeon", write_tree(tmp_path, tree))
    steps = {step.id: step for step in source.steps}
    assert sorted(steps) == ["aidungeon/t/0", "aidungeon/t/1", "aidungeon/t/1.0", "aidungeon/t/1.1"]
    first = steps["aidungeon/t/0"]
    assert first.scene == "You wake up. You leave the room. The hall is dark."
    assert first.choices == ["Go left", "Go right"] and first.next_scene == "A dog growls."
    assert first.lore == ["The bombs fell."] and first.genre == "survival"
    assert steps["aidungeon/t/1"].next_choices == ["Enter", "Knock"]
    deep = steps["aidungeon/t/1.1"]
    assert [(h.scene, h.chosen) for h in deep.history] == [("You wake up. You leave the room. The hall is dark.", 1)]
    assert deep.next_scene == "Silence." and deep.next_choices == []


def test_aidungeon_drops_swapped_action_and_result(tmp_path: Path) -> None:
    narration = " ".join(["word"] * 25)
    tree = {"tree_id": "t", "first_story_block": "Start.", "action_results": [
        node("run", "You run."), node("hide", "You hide."), node(narration, "duck"),
    ]}
    source = load_source("aidungeon", write_tree(tmp_path, tree))
    assert [s.choices for s in source.steps] == [["Run", "Hide"], ["Run", "Hide"]]
    assert source.dropped["action looks like narration"] == 1


def test_missing_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no crowdsourcedstory"):
        load_source("aidungeon", tmp_path)
    with pytest.raises(SourceError, match=r"fifi\.html: cannot read the gamebook"):
        load_source("fifi", tmp_path)


def test_real_aidungeon_trees(public_data: Path) -> None:
    source = load_source("aidungeon", public_data)
    ids = [step.id for step in source.steps]
    assert len(ids) == len(set(ids)) > 300
    assert source.licence.startswith("MIT") and "latitudegames/AIDungeon" in source.origin
    assert all(2 <= len(step.choices) <= 4 for step in source.steps)
    assert {f.name for f in source.files} >= {"LICENSE", "crowdsourcedstory0.json"}


def test_real_fifi_pages_are_deduplicated(public_data: Path) -> None:
    source = load_source("fifi", public_data)
    scenes = {step.scene for step in source.steps}
    assert source.dropped["inventory variant of a page"] == 2160 - 120
    assert len(source.steps) > 200 and len(scenes) < 120
    assert source.licence == "CC0 1.0"
    step = source.steps[0]
    assert "<" not in step.scene and step.choices[0].startswith("Go ")
    assert all(step.history == [] for step in source.steps)
