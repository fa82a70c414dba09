"""The MLflow tracking store: where runs, datasets and (later) registered models live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from engine.errors import TrackingError


@dataclass(frozen=True)
class TrackingTarget:
    """A tracking URI, and where a new experiment keeps its artifacts (``None``: the server decides)."""

    uri: str
    artifact_root: Path | None = None

    def activate(self) -> None:
        mlflow.set_tracking_uri(self.uri)
        if self.artifact_root is not None:
            self.artifact_root.mkdir(parents=True, exist_ok=True)

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, created (with our artifact root) if it is missing."""
        self.activate()
        try:
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            location = self.artifact_root.resolve().as_uri() if self.artifact_root is not None else None
            return str(mlflow.create_experiment(name, artifact_location=location))
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.uri}: cannot open experiment {name!r}: {exc.message}") from exc
