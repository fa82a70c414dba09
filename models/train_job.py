"""A whole training job: dataset version in, a registered ``challenger`` version out, all tracked in MLflow."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from data.feedback import PREFERENCES_FILE, PreferencePair, pairs_from_jsonl
from data.tracking import TrackingTarget
from data.versioning import DatasetVersion, log_dataset_input
from engine.errors import ConfigError, TrackingError, TrainingError
from engine.prompt_format import PROMPT_FORMAT_VERSION
from models.config import TrainConfig
from models.examples import Example, encode, examples_from_steps
from models.preference import DpoResult, preference_steps
from models.registry import CHALLENGER, Registered, log_storyteller, set_alias, set_version_tag
from models.storyteller import ADAPTER_DIR, Card, Storyteller
from models.training import (
    STATE_FILE,
    Progress,
    TrainingRun,
    TrainState,
    count_parameters,
    load_state,
    new_storyteller,
    validation_loss,
)

TRAIN_EXPERIMENT = "cyoa-train"
PARENT_TAG = "cyoa.parent_model"
# The champion's cosine schedule ended near a tenth of its peak learning rate; fine-tuning restarts there, so
# the new examples are learned without a jump that undoes what the champion knows. --learning-rate overrides.
FINE_TUNE_LR_FACTOR = 0.1
# DPO's usual beta, and a learning rate under the fine-tuning rates of tiny and small (3e-4, 2e-4): a few steps
# on a few pairs should nudge the model, not rewrite it.
DPO_BETA = 0.1
DPO_LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class TrainOutcome:
    registered: Registered
    state: TrainState
    seconds: float
    tokens_per_second: float
    parameters: int
    checkpoint: Path  # the folder registered: the best checkpoint, or it after the preference steps
    preference: DpoResult | None = None
    parent_val_loss: float | None = None  # the fine-tuned parent's validation loss before the first step


def _log_metrics(metrics: dict[str, float], step: int) -> None:
    mlflow.log_metrics(metrics, step=step)


def _training_texts(dataset: DatasetVersion) -> list[str]:
    """What the tokenizer learns from: the prose and choices of the training split only."""
    texts: list[str] = []
    for step in dataset.splits["train"]:
        texts += [step.premise, *step.lore, step.scene, *step.choices, step.next_scene, *step.next_choices]
    return texts


def fine_tune_config(parent: Storyteller, preset_name: str | None, **overrides: object) -> TrainConfig:
    """The config to fine-tune a registered storyteller: its own architecture, window and schedule, a tenth of
    its peak learning rate, and the given overrides (``None`` keeps the value)."""
    own = parent.card.config
    if preset_name is not None and preset_name != own.preset:
        raise ConfigError(f"the champion {parent.version} is a {own.preset} model and fine-tuning keeps its "
                          f"architecture: drop --preset {preset_name}, or train a new {preset_name} model with "
                          f"--from-scratch")
    rate = float(f"{own.learning_rate * FINE_TUNE_LR_FACTOR:.6g}")  # 0.0003, not 0.00030000000000000003
    changes = {"learning_rate": rate, "base_model": f"models:/{parent.version}",
               "from_scratch": False, **{key: value for key, value in overrides.items() if value is not None}}
    try:
        return dataclasses.replace(own, **changes)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"fine-tuning {parent.version}: {exc}") from exc


def parent_model(config: TrainConfig) -> str | None:
    """The registered version a config fine-tunes (``name/version``), if it fine-tunes one."""
    base = config.base_model or ""
    return base.removeprefix("models:/") if base.startswith("models:/") else None


def _fine_tuned(parent: Storyteller, config: TrainConfig, dataset: DatasetVersion) -> Storyteller:
    """The parent's weights and tokenizer under a new card (this run's config and dataset). An adapter parent
    is loaded again unmerged, so its adapter goes on training over the same pinned base."""
    model = parent.model
    if parent.card.base is not None and parent.folder is not None and (parent.folder / ADAPTER_DIR).is_dir():
        model = Storyteller.load(parent.folder, parent.version, trainable=True).model
    return Storyteller(model, parent.tokenizer, Card(PROMPT_FORMAT_VERSION, parent.card.family, config,
                                                     dataset.digest, parent.card.base), parent.version)


def _val_loss(storyteller: Storyteller, validation: list[Example]) -> float:
    """Validation loss of a storyteller as it is (the parent before fine-tuning: what fine-tuning has to beat)."""
    encoded = [encode(storyteller.tokenizer, e, storyteller.max_length, storyteller.seq2seq) for e in validation]
    return validation_loss(storyteller, encoded, storyteller.card.config.batch_size, storyteller.card.config.bf16)


def base_params(storyteller: Storyteller) -> dict[str, str]:
    """The pretrained base a run starts from, as run parameters (name, package or folder, digest, licence)."""
    base = storyteller.card.base
    if base is None:
        return {"base": "none"}
    return base.as_params()


def preference_pairs(dataset: DatasetVersion) -> list[PreferencePair]:
    """The preference pairs of a harvested dataset version (``cyoa feedback export``)."""
    path = dataset.folder / PREFERENCES_FILE
    try:
        pairs = pairs_from_jsonl(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pairs = []
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable preference pairs ({exc})") from exc
    if not pairs:
        raise TrainingError(f"--preference-steps: dataset {dataset.digest} has no preference pairs; harvest play "
                            f"with `cyoa feedback export` and train on the version it prints")
    return pairs


def _prefer(best: Storyteller, pairs: list[PreferencePair], steps: int, validation: list[Example],
            folder: Path) -> tuple[Path, DpoResult]:
    """DPO steps on the best checkpoint, logged; the result saved next to it (the best stays as it was)."""
    mlflow.log_params({"preference_steps": str(steps), "preference_pairs": str(len(pairs)),
                       "dpo_beta": str(DPO_BETA), "dpo_learning_rate": str(DPO_LEARNING_RATE)})
    result = preference_steps(best, pairs, steps, beta=DPO_BETA, learning_rate=DPO_LEARNING_RATE, log=_log_metrics)
    mlflow.log_metrics({"dpo_first_loss": result.first_loss, "dpo_last_loss": result.last_loss,
                        "dpo_margin_before": result.margin_before, "dpo_margin_after": result.margin_after,
                        "dpo_accuracy_before": result.accuracy_before, "dpo_accuracy_after": result.accuracy_after,
                        "dpo_val_loss": _val_loss(best, validation), "dpo_seconds": result.seconds})
    return best.save(folder / "preferred"), result


def train_model(
    config: TrainConfig, dataset: DatasetVersion, target: TrackingTarget, checkpoints: Path, model_name: str,
    resume_from: Path | None = None, on_progress: Callable[[Progress], None] | None = None,
    max_minutes: float | None = None, parent: Storyteller | None = None, preference: int = 0,
) -> TrainOutcome:
    """Train (or resume), then log the best checkpoint and register it as ``challenger``. With ``parent`` (a
    registered storyteller, e.g. the champion, and ``config`` from ``fine_tune_config``) its weights and
    tokenizer are fine-tuned instead of a new model's. With ``preference`` steps, DPO on the dataset's
    preference pairs follows, and its result is registered."""
    pairs = preference_pairs(dataset) if preference > 0 else []
    train = examples_from_steps(dataset.splits["train"])
    validation = examples_from_steps(dataset.splits["validation"])
    if resume_from is not None:
        state = load_state(resume_from)
        storyteller = Storyteller.load(resume_from / "last", trainable=True)
        config = storyteller.card.config
        if storyteller.card.dataset_digest != dataset.digest:
            raise TrainingError(f"{resume_from} trained on dataset {storyteller.card.dataset_digest}, not "
                                f"{dataset.digest}: resume with `--dataset {storyteller.card.dataset_digest}`")
    elif parent is not None:
        storyteller = _fine_tuned(parent, config, dataset)
    else:
        storyteller = new_storyteller(config, _training_texts(dataset), dataset.digest)
    parent_label, parent_loss = parent_model(config), None
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
                                   "trainable_parameters": str(count_parameters(storyteller.model, trainable=True)),
                                   **base_params(storyteller),
                                   "examples_train": str(len(train)), "examples_validation": str(len(validation)),
                                   "parent_model": parent_label or "none"})
                mlflow.set_tags({"cyoa.dataset_digest": dataset.digest, "cyoa.preset": config.preset,
                                 "cyoa.kind": "fine-tuning" if parent_label else "training",
                                 PARENT_TAG: parent_label or "none"})
                log_dataset_input(dataset, "training")
                if parent is not None:
                    parent_loss = _val_loss(storyteller, validation)
                    mlflow.log_metric("parent_val_loss", parent_loss, step=0)
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
            best = Storyteller.load(folder / "best", trainable=bool(pairs))  # DPO trains an adapter, not a merge
            speed = (state.tokens_seen - tokens_before) / max(seconds, 1e-6)
            mlflow.log_metrics({"best_val_loss": state.best_val_loss,
                                "best_val_perplexity": math.exp(min(state.best_val_loss, 50.0)),
                                "best_step": state.best_step, "train_seconds": seconds,
                                "train_tokens_per_second": speed})
            mlflow.set_tag("cyoa.stop_reason", state.stop_reason)
            chosen, dpo = folder / "best", None
            if pairs:
                chosen, dpo = _prefer(best, pairs, preference, validation, folder)
            registered = log_storyteller(chosen, best.card, model_name)
            set_alias(target, model_name, CHALLENGER, registered.version)
            if parent_label:
                set_version_tag(target, model_name, registered.version, PARENT_TAG, parent_label)
            state.finished = True
            (folder / "last" / STATE_FILE).write_text(json.dumps(state.__dict__, indent=2), encoding="utf-8")
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: training could not be tracked: {exc.message}") from exc
    return TrainOutcome(registered, state, seconds, speed, parameters, chosen, dpo, parent_loss)
