"""The shipped starter: a fine-tuned storyteller released with cyoa, registered as a version at bootstrap.

Training SmolLM2 on the bundled stories takes most of an hour on 2 cores, so a fresh install does not train:
``models/starter/`` holds the LoRA adapter (about 20 MB) that ``cyoa train`` produced, with ``release.json``
saying exactly how (the command, the dataset digest, the config, the run's figures). ``cyoa bootstrap``
converts the pinned base from its package, logs the adapter to MLflow as a new version of the registered
model (tagged ``cyoa.release``) and makes it the champion. ``cyoa train --base smollm2`` with the recorded
options reproduces it (same data, same seed; a different CPU may round differently).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from data.tracking import TrackingTarget
from engine.errors import ModelLoadError, TrackingError
from models.pretrained import resolve_base
from models.registry import CHAMPION, Registered, log_storyteller, set_alias, set_version_tag
from models.storyteller import CARD_FILE, Card

STARTER_DIR = Path(__file__).resolve().parent / "starter"
RELEASE_FILE = "release.json"
RELEASE_TAG = "cyoa.release"
STARTER_EXPERIMENT = "cyoa-train"


@dataclass(frozen=True)
class Release:
    name: str
    command: str
    dataset_digest: str
    facts: dict[str, Any]  # the training run's figures and the evaluation, as measured when it was made
    folder: Path  # the storyteller folder (adapter/, tokenizer/, storyteller.json)

    @property
    def card(self) -> Card:
        return Card.from_json((self.folder / CARD_FILE).read_text(encoding="utf-8"))


def shipped(root: Path = STARTER_DIR) -> Release | None:
    """The release shipped with this cyoa, or ``None`` if there is none (a checkout without it)."""
    path = root / RELEASE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        release = Release(str(data["name"]), str(data["command"]), str(data["dataset_digest"]),
                          dict(data.get("facts", {})), root / str(data.get("folder", "storyteller")))
        release.card  # noqa: B018 - read now: a broken release fails here, with its path
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: the shipped starter is unreadable ({exc})") from exc
    return release


def register_release(release: Release, target: TrackingTarget, model_name: str) -> Registered:
    """Convert the release's base if needed, log the release as a new version and make it the champion."""
    card = release.card
    if card.base is not None:
        resolve_base(card.base)  # converts the packaged base once (a clear error if its package is missing)
    target.activate()
    try:
        experiment = target.experiment_id(STARTER_EXPERIMENT)
        with mlflow.start_run(experiment_id=experiment, run_name=f"release-{release.name}"):
            mlflow.log_params({**card.config.flat_params(), "dataset_digest": release.dataset_digest,
                               "release": release.name, "release_command": release.command})
            mlflow.set_tags({"cyoa.kind": "release", RELEASE_TAG: release.name,
                             "cyoa.dataset_digest": release.dataset_digest, "cyoa.preset": card.config.preset})
            numbers = {key: float(value) for key, value in release.facts.items() if isinstance(value, int | float)}
            if numbers:
                mlflow.log_metrics(numbers)
            registered = log_storyteller(release.folder, card, model_name,
                                         extra_metadata={"release": release.name, "command": release.command})
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot register the starter release: {exc.message}") from exc
    set_version_tag(target, model_name, registered.version, RELEASE_TAG, release.name)
    set_version_tag(target, model_name, registered.version, "cyoa.release_command", release.command)
    set_alias(target, model_name, CHAMPION, registered.version)
    return registered
