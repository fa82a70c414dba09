"""Dataset versions in MLflow: one run in the experiment ``cyoa-data`` per build.

A run holds the build's params and statistics, the original story files and the processed splits as
artifacts, and the dataset itself as MLflow dataset inputs (the whole dataset and each split) whose
digests are content hashes: the same inputs give the same digest. The tag ``cyoa.dataset_digest`` finds
the run of a dataset version again.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.exceptions import MlflowException

from data.build import SPLITS, DatasetBuild
from data.steps import Step, read_steps
from data.tracking import TrackingTarget
from engine.errors import DatasetError, InvalidDataError, TrackingError

DATA_EXPERIMENT = "cyoa-data"
DIGEST_TAG = "cyoa.dataset_digest"


def _frame(build: DatasetBuild, split: str | None) -> pd.DataFrame:
    return steps_frame(build.splits, SPLITS if split is None else (split,))


def steps_frame(splits: dict[str, list[Step]], names: tuple[str, ...] = SPLITS) -> pd.DataFrame:
    """The steps of the named splits as one table (what an MLflow dataset input shows)."""
    rows = [
        {
            "split": name,
            "id": step.id,
            "genre": step.genre,
            "premise": step.premise,
            "history": json.dumps([item.model_dump() for item in step.history], ensure_ascii=False),
            "scene": step.scene,
            "action": step.action,
            "next_scene": step.next_scene,
            "next_choices": json.dumps(step.next_choices, ensure_ascii=False),
        }
        for name in names
        for step in splits[name]
    ]
    return pd.DataFrame(rows, columns=["split", "id", "genre", "premise", "history", "scene", "action",
                                       "next_scene", "next_choices"])


def pandas_dataset(frame: pd.DataFrame, path: Path, name: str, digest: str) -> PandasDataset:
    with warnings.catch_warnings():
        # MLflow registers the local-file source twice and warns that the path is ambiguous; it is not.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return from_pandas(frame, source=str(path.resolve()), name=name, digest=digest)


def log_build(
    build: DatasetBuild, written: Path, story_files: list[Path], target: TrackingTarget,
    experiment: str = DATA_EXPERIMENT,
) -> str:
    """Log a finished build to MLflow; returns the run id."""
    experiment_id = target.experiment_id(experiment)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"dataset-{build.digest}") as run:
            mlflow.set_tags({DIGEST_TAG: build.digest, "cyoa.kind": "dataset"})
            mlflow.log_params(build.params)
            mlflow.log_metrics({key: float(value) for key, value in build.stats.items()})
            for path in story_files:
                mlflow.log_artifact(str(path), artifact_path="original/stories")
            for source in build.sources:
                for path in source.files:
                    mlflow.log_artifact(str(path), artifact_path=f"original/{source.name}")
            mlflow.log_artifacts(str(written), artifact_path="processed")
            mlflow.log_input(pandas_dataset(_frame(build, None), written, "cyoa-stories", build.digest),
                             context="dataset")
            for split in SPLITS:
                dataset = pandas_dataset(_frame(build, split), written / f"{split}.jsonl", f"cyoa-stories-{split}",
                                         build.split_digest(split))
                mlflow.log_input(dataset, context=split)
            return str(run.info.run_id)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot log dataset {build.digest}: {exc.message}") from exc


@dataclass(frozen=True)
class DatasetVersion:
    """A built dataset version, read back from its folder: its digest and its splits as steps."""

    digest: str
    folder: Path
    run_id: str | None
    splits: dict[str, list[Step]]


def _digest_runs(target: TrackingTarget, ref: str) -> list[Any]:
    experiment_id = target.experiment_id(DATA_EXPERIMENT)
    query = "" if ref == "latest" else f"tags.`{DIGEST_TAG}` LIKE '{ref}%'"
    try:
        return list(mlflow.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                                       output_format="list", max_results=50))
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot search dataset versions: {exc.message}") from exc


def find_dataset(target: TrackingTarget, datasets_dir: Path, ref: str = "latest") -> DatasetVersion | None:
    """The dataset version ``ref`` (a digest, a unique prefix of one, or ``latest``).

    Reads the local copy under ``datasets_dir`` when there is one, else downloads the run's processed splits.
    ``None`` when ``ref`` is ``latest`` and no dataset was ever built; an unknown digest is an error.
    """
    if not re.fullmatch(r"latest|[0-9a-f]{4,64}", ref):
        raise DatasetError(f"dataset {ref!r}: give a digest (hex, at least 4 characters) or 'latest'")
    runs = _digest_runs(target, ref)
    digests = sorted({run.data.tags[DIGEST_TAG] for run in runs})
    if not runs:
        if ref == "latest":
            return None
        raise DatasetError(f"no dataset version {ref} in {target.uri}: list them with `mlflow ui` or build one "
                           f"with `cyoa data build`")
    if ref != "latest" and len(digests) > 1:
        raise DatasetError(f"dataset {ref!r} is ambiguous: {', '.join(digests)}")
    run = runs[0]
    digest = str(run.data.tags[DIGEST_TAG])
    folder = datasets_dir / digest
    if not all((folder / f"{split}.jsonl").exists() for split in SPLITS):
        try:
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="processed",
                                                dst_path=str(datasets_dir / f".{digest}.download"))
        except MlflowException as exc:
            raise DatasetError(f"dataset {digest}: cannot download its splits: {exc.message}") from exc
        (datasets_dir / f".{digest}.download" / "processed").replace(folder)
    splits: dict[str, list[Step]] = {}
    for split in SPLITS:
        steps, issues = read_steps(folder / f"{split}.jsonl")
        if issues:
            raise InvalidDataError(issues)
        splits[split] = steps
    return DatasetVersion(digest, folder, str(run.info.run_id), splits)


def log_dataset_input(version: DatasetVersion, context: str) -> None:
    """Link the active run (a training or evaluation run) to the dataset version it used."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(str(version.folder.resolve()))
    dataset = MetaDataset(source, name="cyoa-stories", digest=version.digest)  # type: ignore[abstract]
    mlflow.log_input(dataset, context=context)
