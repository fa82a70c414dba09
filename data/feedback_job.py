"""The feedback export as one job: saved games in, a new dataset version out, logged to MLflow with its lineage.

A harvested version is its **base** dataset (a ``cyoa data build``) with the harvested steps added to the
train split, plus ``preferences.jsonl``. Every export harvests all the games again onto the base, rather than
adding to the previous harvest: a player who opts out later, or a word added to the block list, then removes
older rows too, and the same games always give the same digest, so exporting twice with no new play creates
nothing.

Harvested steps go to the **train split only**: validation and test stay the bundled stories, so validation
loss, test metrics and the promotion gate compare every model on the same data; and play is written by the
model itself, so scoring a model on it would reward its own style.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from data.atomic import write_text_atomic
from data.build import DIGEST_LENGTH, SPLITS
from data.feedback import (
    FEEDBACK_FORMAT_VERSION,
    PREFERENCES_FILE,
    FeedbackOptions,
    Harvest,
    harvest,
    pairs_to_jsonl,
)
from data.steps import STEP_FORMAT_VERSION, Step, steps_to_jsonl
from data.store import SQLiteGameStore
from data.tracking import TrackingTarget
from data.versioning import (
    DATA_EXPERIMENT,
    DIGEST_TAG,
    DatasetVersion,
    find_dataset,
    pandas_dataset,
    steps_frame,
)
from engine.errors import DatasetError, TrackingError
from engine.game import Game
from engine.story import SCHEMA_VERSION

METADATA_FILE = "metadata.json"
PARENT_TAG = "cyoa.parent_digest"
KIND = "feedback"


@dataclass(frozen=True)
class FeedbackExport:
    """What an export did. ``digest`` is ``None`` when play gave nothing to export; ``created`` is false when
    that version existed already (no new run, nothing written)."""

    parent: str
    digest: str | None
    created: bool
    run_id: str | None
    folder: Path | None
    counts: dict[str, int]
    examples: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "folder": str(self.folder) if self.folder else None}


# --- reading --------------------------------------------------------------------------------------
async def read_games(path: Path) -> tuple[list[Game], frozenset[str]]:
    """Every saved game and every opted-out player."""
    if not path.exists():
        raise DatasetError(f"{path}: no game database yet; play first (`cyoa play`, or the Discord bot)")
    async with SQLiteGameStore(path) as store:
        return await store.all_games(), await store.opted_out()


def harvest_of(version: DatasetVersion) -> dict[str, Any] | None:
    """The ``feedback`` section of a version's metadata: present only on harvested versions."""
    path = version.folder / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable dataset metadata ({exc})") from exc
    section = metadata.get("feedback") if isinstance(metadata, dict) else None
    return section if isinstance(section, dict) else None


def base_of(version: DatasetVersion, target: TrackingTarget, datasets_dir: Path) -> DatasetVersion:
    """The dataset a harvest goes onto: ``version`` itself, or the base it was harvested onto."""
    section = harvest_of(version)
    if section is None:
        return version
    parent = str(section.get("parent", ""))
    base = find_dataset(target, datasets_dir, parent) if parent else None
    if base is None:
        raise DatasetError(f"dataset {version.digest} is a feedback export whose base dataset {parent!r} cannot be "
                           f"found; rebuild it with `cyoa data build`")
    return base


# --- composing the version ------------------------------------------------------------------------
def compose(base: DatasetVersion, harvested: Harvest) -> tuple[dict[str, list[Step]], str, str]:
    """The new splits, the preferences' JSON Lines and the version's content digest."""
    splits = {split: list(base.splits[split]) for split in SPLITS}
    splits["train"] += harvested.steps
    preferences = pairs_to_jsonl(harvested.pairs)
    hasher = hashlib.sha256(f"schema={SCHEMA_VERSION};steps={STEP_FORMAT_VERSION};"
                            f"feedback={FEEDBACK_FORMAT_VERSION}\n".encode())
    for split in SPLITS:
        hasher.update(f"[{split}]\n".encode())
        hasher.update(steps_to_jsonl(splits[split]).encode("utf-8"))
    hasher.update(b"[preferences]\n")
    hasher.update(preferences.encode("utf-8"))
    return splits, preferences, hasher.hexdigest()[:DIGEST_LENGTH]


def _short_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def _metadata(digest: str, base: DatasetVersion, splits: dict[str, list[Step]], preferences: str,
              harvested: Harvest, options: FeedbackOptions) -> dict[str, Any]:
    return {
        "digest": digest,
        "split_digests": {split: _short_digest(steps_to_jsonl(splits[split])) for split in SPLITS},
        "preferences_digest": _short_digest(preferences),
        "stats": {**{f"examples_{split}": len(splits[split]) for split in SPLITS}, "preferences": len(harvested.pairs)},
        "feedback": {
            "format_version": FEEDBACK_FORMAT_VERSION,
            "parent": base.digest,
            "harvested_split": "train",
            "options": options.as_params(),
            "counts": harvested.counts,
        },
    }


def write_version(folder: Path, splits: dict[str, list[Step]], preferences: str, metadata: dict[str, Any]) -> None:
    for split in SPLITS:
        write_text_atomic(folder / f"{split}.jsonl", steps_to_jsonl(splits[split]))
    write_text_atomic(folder / PREFERENCES_FILE, preferences)
    write_text_atomic(folder / METADATA_FILE, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")


# --- MLflow ---------------------------------------------------------------------------------------
def existing_run(target: TrackingTarget, digest: str) -> str | None:
    """The run of dataset version ``digest``, if one was logged."""
    experiment_id = target.experiment_id(DATA_EXPERIMENT)
    try:
        runs = mlflow.search_runs([experiment_id], filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
                                  output_format="list", max_results=1)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot search dataset versions: {exc.message}") from exc
    return str(runs[0].info.run_id) if runs else None


def _preferences_frame(text: str) -> pd.DataFrame:
    rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    columns = ["id", "kind", "prompt", "chosen", "rejected"]
    return pd.DataFrame([{key: row[key] for key in columns} for row in rows], columns=columns)


def log_version(target: TrackingTarget, folder: Path, metadata: dict[str, Any], splits: dict[str, list[Step]],
                preferences: str) -> str:
    """One run in ``cyoa-data``: lineage (parent digest), counts kept and dropped per filter, the files."""
    digest, section = str(metadata["digest"]), metadata["feedback"]
    experiment_id = target.experiment_id(DATA_EXPERIMENT)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"feedback-{digest}") as run:
            mlflow.set_tags({DIGEST_TAG: digest, "cyoa.kind": KIND, PARENT_TAG: section["parent"]})
            mlflow.log_params({"parent_digest": section["parent"], "sources": "parent dataset,play",
                               "harvested_split": "train", "feedback_format_version": str(FEEDBACK_FORMAT_VERSION),
                               "step_format_version": str(STEP_FORMAT_VERSION),
                               **{key: str(value) for key, value in section["options"].items()}})
            mlflow.log_metrics({**{k: float(v) for k, v in section["counts"].items()},
                                **{k: float(v) for k, v in metadata["stats"].items()}})
            mlflow.log_artifacts(str(folder), artifact_path="processed")
            mlflow.log_input(pandas_dataset(steps_frame(splits), folder, "cyoa-stories", digest), context="dataset")
            for split in SPLITS:
                mlflow.log_input(pandas_dataset(steps_frame(splits, (split,)), folder / f"{split}.jsonl",
                                                f"cyoa-stories-{split}", metadata["split_digests"][split]),
                                 context=split)
            mlflow.log_input(pandas_dataset(_preferences_frame(preferences), folder / PREFERENCES_FILE,
                                            "cyoa-preferences", metadata["preferences_digest"]), context="preferences")
            return str(run.info.run_id)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot log dataset {digest}: {exc.message}") from exc


# --- the job --------------------------------------------------------------------------------------
def export_feedback(games: list[Game], opted_out: frozenset[str], latest: DatasetVersion, options: FeedbackOptions,
                    datasets_dir: Path, target: TrackingTarget) -> FeedbackExport:
    """Harvest every saved game onto the base of ``latest``; write and log the version unless it exists.

    Blocking (files, MLflow): an async caller runs it in a worker thread after ``await read_games(...)``."""
    base = base_of(latest, target, datasets_dir)
    existing = [step for split in SPLITS for step in base.splits[split]]
    harvested = harvest(games, opted_out, existing, options)
    splits, preferences, digest = compose(base, harvested)
    examples = {**{split: len(splits[split]) for split in SPLITS}, "preferences": len(harvested.pairs)}
    if not harvested.steps and not harvested.pairs:
        return FeedbackExport(base.digest, None, False, None, None, harvested.counts, examples)
    folder = datasets_dir / digest
    found = existing_run(target, digest)
    if found is not None:
        return FeedbackExport(base.digest, digest, False, found, folder, harvested.counts, examples)
    metadata = _metadata(digest, base, splits, preferences, harvested, options)
    write_version(folder, splits, preferences, metadata)
    run_id = log_version(target, folder, metadata, splits, preferences)
    return FeedbackExport(base.digest, digest, True, run_id, folder, harvested.counts, examples)
