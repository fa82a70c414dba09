"""A whole training job: dataset version in, a registered ``challenger`` version out, all tracked in MLflow."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion, log_dataset_input
from engine.errors import TrackingError, TrainingError
from models.config import TrainConfig
from models.examples import examples_from_steps
from models.registry import CHALLENGER, Registered, log_storyteller, set_alias
from models.storyteller import Storyteller
from models.training import (
    STATE_FILE,
    Progress,
    TrainingRun,
    TrainState,
    count_parameters,
    load_state,
    new_storyteller,
)

TRAIN_EXPERIMENT = "cyoa-train"


@dataclass(frozen=True)
class TrainOutcome:
    registered: Registered
    state: TrainState
    seconds: float
    tokens_per_second: float
    parameters: int
    checkpoint: Path


def _log_metrics(metrics: dict[str, float], step: int) -> None:
    mlflow.log_metrics(metrics, step=step)


def _training_texts(dataset: DatasetVersion) -> list[str]:
    """What the tokenizer learns from: the prose and choices of the training split only."""
    texts: list[str] = []
    for step in dataset.splits["train"]:
        texts += [step.premise, *step.lore, step.scene, *step.choices, step.next_scene, *step.next_choices]
    return texts


def train_model(
    config: TrainConfig, dataset: DatasetVersion, target: TrackingTarget, checkpoints: Path, model_name: str,
    resume_from: Path | None = None, on_progress: Callable[[Progress], None] | None = None,
    max_minutes: float | None = None,
) -> TrainOutcome:
    """Train (or resume), then log the best checkpoint and register it as ``challenger``."""
    train = examples_from_steps(dataset.splits["train"])
    validation = examples_from_steps(dataset.splits["validation"])
    if resume_from is not None:
        state = load_state(resume_from)
        storyteller = Storyteller.load(resume_from / "last")
        config = storyteller.card.config
        if storyteller.card.dataset_digest != dataset.digest:
            raise TrainingError(f"{resume_from} trained on dataset {storyteller.card.dataset_digest}, not "
                                f"{dataset.digest}: resume with `--dataset {storyteller.card.dataset_digest}`")
    else:
        storyteller = new_storyteller(config, _training_texts(dataset), dataset.digest)
    budget = max_minutes if max_minutes is not None else config.max_minutes
    experiment_id = target.experiment_id(TRAIN_EXPERIMENT)
    started = time.monotonic()
    try:
        run_context = (mlflow.start_run(run_id=state.run_id) if resume_from is not None else
                       mlflow.start_run(experiment_id=experiment_id, run_name=f"{config.preset}-{dataset.digest}"))
        with run_context as run:
            parameters = count_parameters(storyteller.model)
            if resume_from is None:
                state = TrainState(run_id=run.info.run_id)
                mlflow.log_params({**config.flat_params(), "dataset_digest": dataset.digest,
                                   "family": storyteller.card.family, "parameters": str(parameters),
                                   "examples_train": str(len(train)), "examples_validation": str(len(validation))})
                mlflow.set_tags({"cyoa.dataset_digest": dataset.digest, "cyoa.preset": config.preset,
                                 "cyoa.kind": "training"})
                log_dataset_input(dataset, "training")
            folder = checkpoints / state.run_id
            job = TrainingRun(storyteller, train, validation, folder, state, log=_log_metrics, on_progress=on_progress)
            if resume_from is not None:
                job.load_optimizer()
            tokens_before = state.tokens_seen
            state = job.run(budget)
            seconds = time.monotonic() - started
            if not (folder / "best").exists():
                raise TrainingError(f"training stopped ({state.stop_reason}) before the first validation: no "
                                    f"checkpoint to register; give it more time (--max-minutes) and resume with "
                                    f"`cyoa train --resume`")
            best = Storyteller.load(folder / "best")
            speed = (state.tokens_seen - tokens_before) / max(seconds, 1e-6)
            mlflow.log_metrics({"best_val_loss": state.best_val_loss,
                                "best_val_perplexity": math.exp(min(state.best_val_loss, 50.0)),
                                "best_step": state.best_step, "train_seconds": seconds,
                                "train_tokens_per_second": speed})
            mlflow.set_tag("cyoa.stop_reason", state.stop_reason)
            registered = log_storyteller(folder / "best", best.card, model_name)
            set_alias(target, model_name, CHALLENGER, registered.version)
            state.finished = True
            (folder / "last" / STATE_FILE).write_text(json.dumps(state.__dict__, indent=2), encoding="utf-8")
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: training could not be tracked: {exc.message}") from exc
    return TrainOutcome(registered, state, seconds, speed, parameters, folder / "best")
