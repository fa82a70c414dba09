"""Dataset versions in MLflow: one run in the experiment ``cyoa-data`` per build.

A run holds the build's params and statistics, the original story files and the processed splits as
artifacts, and the dataset itself as MLflow dataset inputs (the whole dataset and each split) whose
digests are content hashes: the same inputs give the same digest. The tag ``cyoa.dataset_digest`` finds
the run of a dataset version again.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.exceptions import MlflowException

from data.build import SPLITS, DatasetBuild
from data.tracking import TrackingTarget
from engine.errors import TrackingError

DATA_EXPERIMENT = "cyoa-data"
DIGEST_TAG = "cyoa.dataset_digest"


def _frame(build: DatasetBuild, split: str | None) -> pd.DataFrame:
    splits = SPLITS if split is None else (split,)
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
        for name in splits
        for step in build.splits[name]
    ]
    return pd.DataFrame(rows, columns=["split", "id", "genre", "premise", "history", "scene", "action",
                                       "next_scene", "next_choices"])


def _dataset(frame: pd.DataFrame, path: Path, name: str, digest: str) -> PandasDataset:
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
            mlflow.log_input(_dataset(_frame(build, None), written, "cyoa-stories", build.digest), context="dataset")
            for split in SPLITS:
                dataset = _dataset(_frame(build, split), written / f"{split}.jsonl", f"cyoa-stories-{split}",
                                   build.split_digest(split))
                mlflow.log_input(dataset, context=split)
            return str(run.info.run_id)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {target.uri}: cannot log dataset {build.digest}: {exc.message}") from exc
