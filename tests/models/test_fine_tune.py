"""``cyoa train`` after ``cyoa feedback export``: the champion fine-tuned on the harvested dataset version."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cyoa.cli import app
from cyoa.settings import Settings
from data.feedback import FeedbackOptions, harvest
from data.versioning import find_dataset
from models.config import preset
from models.examples import examples_from_steps
from models.preference import preference_steps
from models.registry import CHAMPION, set_alias
from models.storyteller import Storyteller
from models.train_job import PARENT_TAG, TrainOutcome
from tests.commands import run_json, runner
from tests.data.games import new_engine, play, save, use_few_stories
from tests.models.conftest import MODEL


def tokenizer_of(run_id: str) -> str:
    return (Settings().checkpoints_dir / run_id / "best" / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8")


def test_train_fine_tunes_the_champion_on_a_harvested_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_few_stories(tmp_path / "stories", monkeypatch)
    first = run_json("train", "--preset", "tiny", "--max-epochs", "1", "--json")  # no champion yet: a new model
    assert first["model"] == f"{MODEL}/1" and first["parent_model"] is None
    settings = Settings()
    set_alias(settings.tracking, MODEL, CHAMPION, "1")
    engine = new_engine()
    games = [asyncio.run(play(engine, [{"p-ana": 0}, {"p-ana": 1}, {"p-bo": 2}])) for _ in range(2)]
    asyncio.run(save(games))
    # One player a choice and no ratings: the trust rules would keep none of it (tests/data covers them).
    exported = run_json("feedback", "export", "--min-supporters", "0", "--json")
    digest, parent = str(exported["digest"]), str(exported["parent"])

    tuned = run_json("train", "--dataset", digest, "--max-epochs", "1", "--max-minutes", "1", "--json")

    assert tuned["model"] == f"{MODEL}/2" and tuned["parent_model"] == f"{MODEL}/1" and tuned["preset"] == "tiny"
    assert tuned["dataset"] == digest
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(str(tuned["run_id"]))
    params, tags = run.data.params, run.data.tags
    assert params["dataset_digest"] == digest and params["parent_model"] == f"{MODEL}/1"
    assert params["base_model"] == f"models:/{MODEL}/1" and params["from_scratch"] == "False"
    assert params["learning_rate"] == "0.0003" and preset("tiny").learning_rate == 0.003  # a tenth
    assert tags[PARENT_TAG] == f"{MODEL}/1" and tags["cyoa.kind"] == "fine-tuning"
    # It trained on the harvested version's train split: the bundled steps plus the harvested ones.
    version = find_dataset(settings.tracking, settings.datasets_dir, digest)
    base = find_dataset(settings.tracking, settings.datasets_dir, parent)
    assert version is not None and base is not None
    assert int(params["examples_train"]) == len(examples_from_steps(version.splits["train"]))
    assert len(version.splits["train"]) == len(base.splits["train"]) + 6
    # From the champion's weights and tokenizer: its validation loss before the first step is the champion's.
    champion_run = client.get_run(str(first["run_id"]))
    assert math.isclose(run.data.metrics["parent_val_loss"], champion_run.data.metrics["best_val_loss"], rel_tol=1e-3)
    assert tuned["parent_val_loss"] == pytest.approx(first["best_val_loss"], abs=2e-3)
    assert tokenizer_of(str(tuned["run_id"])) == tokenizer_of(str(first["run_id"]))
    registered = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(registered.version) == "2" and registered.tags[PARENT_TAG] == f"{MODEL}/1"
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1"

    wrong = runner.invoke(app, ["train", "--dataset", digest, "--preset", "small"])
    assert wrong.exit_code == 1 and f"the champion {MODEL}/1 is a tiny model" in wrong.stderr

    no_pairs = runner.invoke(app, ["train", "--dataset", parent, "--preference-steps", "2"])
    assert no_pairs.exit_code == 1 and f"dataset {parent} has no preference pairs" in no_pairs.stderr

    # A new model instead of the champion, then a few DPO steps on the version's preference pairs.
    fresh = run_json("train", "--dataset", digest, "--preset", "tiny", "--max-epochs", "1", "--from-scratch",
                     "--preference-steps", "3", "--json")
    assert fresh["model"] == f"{MODEL}/3" and fresh["parent_model"] is None
    fresh_run = client.get_run(str(fresh["run_id"]))
    assert fresh_run.data.params["parent_model"] == "none" and fresh_run.data.params["preference_steps"] == "3"
    assert fresh_run.data.params["preference_pairs"] == str(exported["counts"]["pairs_kept"])  # type: ignore[index]
    assert len(client.get_metric_history(fresh_run.info.run_id, "dpo_loss")) == 3
    assert {"dpo_val_loss", "dpo_accuracy_after", "dpo_margin_after"} <= set(fresh_run.data.metrics)
    assert (Settings().checkpoints_dir / str(fresh["run_id"]) / "preferred" / "storyteller.json").exists()


def test_dpo_steps_move_the_model_towards_the_preferred_answers(trained: TrainOutcome) -> None:
    engine = new_engine()
    games = [asyncio.run(play(engine, [{"p-ana": 0}, {"p-ana": 1}])) for _ in range(3)]
    # The trust rules off (one voter, one player deciding every pair): this is about DPO, tests/data about them.
    pairs = harvest(games, frozenset(), [], FeedbackOptions(min_supporters=0, max_player_share=1.0)).pairs
    storyteller = Storyteller.load(trained.checkpoint)
    logged: list[tuple[dict[str, float], int]] = []

    result = preference_steps(storyteller, pairs, 12, learning_rate=3e-3, log=lambda m, s: logged.append((m, s)))

    assert len(pairs) == 12 and result.steps == 12 and [s for _, s in logged] == list(range(1, 13))
    assert result.first_loss == pytest.approx(math.log(2), abs=1e-3)  # the policy starts as the reference
    assert result.last_loss < result.first_loss
    assert result.margin_after > result.margin_before and result.accuracy_after >= result.accuracy_before


def test_dpo_without_pairs_says_what_to_do(trained: TrainOutcome) -> None:
    from engine.errors import TrainingError

    with pytest.raises(TrainingError, match="no preference pairs to train on"):
        preference_steps(Storyteller.load(trained.checkpoint), [], 4)
