"""The shipped starter: SmolLM2 fine-tuned on the bundled stories, registered at bootstrap and writing for real."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from data.tracking import TrackingTarget
from engine.checks import CheckRules, check_output
from engine.prompt_format import StoryContext, Turn
from models.registry import CHAMPION, load_storyteller
from models.starter_job import register_release, shipped

MODEL = "cyoa-storyteller"


@pytest.mark.slow
def test_the_shipped_starter_registers_as_champion_and_writes_a_scene_that_passes_the_checks(
        fresh_tracking: TrackingTarget, tmp_path: Path) -> None:
    release = shipped()
    assert release is not None, "models/starter/release.json is missing"
    assert release.command.startswith("cyoa train --base smollm2")
    card = release.card
    assert card.base is not None and card.base.name == "smollm2" and card.config.lora_rank > 0
    adapter = sum(p.stat().st_size for p in (release.folder / "adapter").iterdir())
    assert adapter < 30_000_000  # an adapter, not a copy of the 540 MB base

    registered = register_release(release, fresh_tracking, MODEL)
    client = MlflowClient(fresh_tracking.uri)
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == registered.version
    tags = client.get_model_version(MODEL, registered.version).tags
    assert tags["cyoa.release"] == release.name and tags["cyoa.base"] == "smollm2"
    assert tags["cyoa.release_command"] == release.command and tags["cyoa.adapter"] == "True"
    assert tags["cyoa.dataset_digest"] == release.dataset_digest

    storyteller = load_storyteller(fresh_tracking, f"models:/{MODEL}@{CHAMPION}")
    context = StoryContext("magic_school", "A first-year at a floating academy finds a door that was not there "
                           "yesterday.", ("Sora-sensei teaches wind magic.",),
                           path=(Turn("You stand in the east corridor of the academy. A brass door hums where "
                                      "yesterday there was only a tapestry of cranes. Your roommate Hikari tugs "
                                      "your sleeve and whispers that the bell for class rang a minute ago.",
                                      "Open the brass door"),))
    [text] = storyteller.write([context], seed=7)
    scene = check_output(text, [context.path[0].scene], CheckRules())  # the engine's own checks
    assert 20 <= len(scene.narration.split()) <= 220
    assert scene.is_ending or all(len(choice.split()) >= 2 for choice in scene.choices)
