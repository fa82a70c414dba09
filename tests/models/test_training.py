from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.errors import TrainingError
from engine.prompt_format import PROMPT_FORMAT_VERSION
from models.config import PRESETS, TrainConfig, preset
from models.examples import examples_from_steps
from models.train_job import TrainOutcome, train_model
from models.training import Progress, batches, learning_rate, load_state, unfinished_runs
from tests.models.conftest import MODEL, tiny


def test_training_logs_everything_and_registers_a_challenger(trained: TrainOutcome, tracking: TrackingTarget,
                                                             dataset: DatasetVersion) -> None:
    client = MlflowClient(tracking.uri)
    run = client.get_run(trained.registered.run_id)
    params = run.data.params
    assert params["dataset_digest"] == dataset.digest and params["preset"] == "tiny"
    assert params["architecture.n_embd"] == "64" and params["sampling.temperature"] == "0.8"
    assert params["learning_rate"] == str(PRESETS["tiny"].learning_rate)
    assert run.data.tags["cyoa.dataset_digest"] == dataset.digest
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) >= 2 and losses[-1].value < losses[0].value  # it learned something
    assert client.get_metric_history(run.info.run_id, "learning_rate")
    val = client.get_metric_history(run.info.run_id, "val_loss")
    assert val and math.isclose(run.data.metrics["best_val_loss"], min(m.value for m in val))
    assert math.isclose(run.data.metrics["val_perplexity"], math.exp(val[-1].value), rel_tol=1e-6)
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [dataset.digest]
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(version.version) == trained.registered.version == "1"
    assert version.tags["cyoa.prompt_format_version"] == str(PROMPT_FORMAT_VERSION)
    card = json.loads((trained.checkpoint / "storyteller.json").read_text())
    assert TrainConfig.from_dict(card["config"]) == tiny(max_epochs=2)  # the config that rebuilds it
    assert trained.state.finished and trained.state.stop_reason == "max epochs"


def test_resume_continues_the_same_run_from_the_last_checkpoint(dataset: DatasetVersion, fresh_tracking: TrackingTarget,
                                                                tmp_path: Path) -> None:
    config = tiny(max_epochs=2, evals_per_epoch=2)
    stop_at: list[int] = []

    def interrupt(progress: Progress) -> None:
        stop_at.append(progress.step)
        if progress.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(config, dataset, fresh_tracking, tmp_path, MODEL, on_progress=interrupt)
    [folder] = unfinished_runs(tmp_path)
    saved = load_state(folder)
    assert 0 < saved.step < 5 and not saved.finished  # the checkpoint of the last evaluation
    outcome = train_model(config, dataset, fresh_tracking, tmp_path, MODEL, resume_from=folder)
    assert outcome.registered.run_id == saved.run_id
    steps_per_epoch = math.ceil(len(examples_from_steps(dataset.splits["train"])) / config.batch_size)
    assert outcome.state.step == 2 * steps_per_epoch and outcome.state.stop_reason == "max epochs"
    history = MlflowClient(fresh_tracking.uri).get_metric_history(saved.run_id, "val_loss")
    assert max(m.step for m in history) == outcome.state.step
    assert unfinished_runs(tmp_path) == []
    with pytest.raises(TrainingError, match="no usable checkpoint"):
        load_state(tmp_path / "nothing")


def test_early_stopping_when_validation_stops_improving(dataset: DatasetVersion, fresh_tracking: TrackingTarget,
                                                        tmp_path: Path) -> None:
    # With a learning rate of 0 the validation loss never improves after the first evaluation.
    outcome = train_model(tiny(max_epochs=5, learning_rate=0.0, evals_per_epoch=2, patience=2), dataset, fresh_tracking,
                          tmp_path, MODEL)
    steps_per_epoch = math.ceil(len(examples_from_steps(dataset.splits["train"])) / 16)
    assert outcome.state.stop_reason == "early stopping"
    assert outcome.state.step < 5 * steps_per_epoch
    assert outcome.state.evals_without_gain == 2


def test_a_spent_time_budget_ends_training_before_any_checkpoint(dataset: DatasetVersion, fresh_tracking: TrackingTarget,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"training stopped \(time budget\) before the first validation"):
        train_model(tiny(), dataset, fresh_tracking, tmp_path, MODEL, max_minutes=0.0)


def test_learning_rate_warms_up_then_decays() -> None:
    config = preset("small")
    rates = [learning_rate(config, step, 1000) for step in (0, 30, 59, 60, 500, 1000)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(config.learning_rate)
    assert rates[3] == pytest.approx(config.learning_rate) and rates[4] < rates[3]
    assert rates[5] == pytest.approx(config.learning_rate * 0.1)


def test_batches_cover_every_example_once_and_are_seeded() -> None:
    class Item:
        def __init__(self, n: int) -> None:
            self.input_ids = list(range(n % 37))

    items = [Item(n) for n in range(100)]
    plan = batches(items, 16, seed=3, epoch=0)  # type: ignore[arg-type]
    assert sorted(i for batch in plan for i in batch) == list(range(100))
    assert plan == batches(items, 16, seed=3, epoch=0)  # type: ignore[arg-type]
    assert plan != batches(items, 16, seed=3, epoch=1)  # type: ignore[arg-type]


def test_unknown_preset_and_bad_base_model(dataset: DatasetVersion, fresh_tracking: TrackingTarget, tmp_path: Path) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(TrainingError, match=r"no config\.json there"):
        train_model(tiny(base_model=str(tmp_path)), dataset, fresh_tracking, tmp_path / "c", MODEL)
