from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from data import STORIES_DIR
from data.build import BuildOptions, build_dataset, write_build
from data.tracking import TrackingTarget
from data.validation import load_stories
from data.versioning import DatasetVersion
from models.config import TrainConfig, preset
from models.train_job import TrainOutcome, train_model

MODEL = "cyoa-storyteller"


def small_dataset(folder: Path, stories_per_genre: int = 1, genres: int = 12) -> DatasetVersion:
    """A real dataset version built from a few bundled stories: one per genre, so every split has some."""
    stories, issues = load_stories(STORIES_DIR)
    assert issues == []
    chosen, seen = [], {}
    for story in sorted(stories, key=lambda s: s.id):
        if seen.get(story.genre, 0) < stories_per_genre and (story.genre in seen or len(seen) < genres):
            seen[story.genre] = seen.get(story.genre, 0) + 1
            chosen.append(story)
    build = build_dataset(chosen, [], BuildOptions(validation_fraction=0.2, test_fraction=0.2))
    written = write_build(build, folder)
    return DatasetVersion(build.digest, written, None, build.splits)


def tiny(**changes: object) -> TrainConfig:
    return dataclasses.replace(preset("tiny"), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetVersion:
    return small_dataset(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="session")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> TrackingTarget:
    home = tmp_path_factory.mktemp("mlflow")
    return TrackingTarget(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")


@pytest.fixture(scope="session")
def trained(dataset: DatasetVersion, tracking: TrackingTarget, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """A tiny storyteller trained for real and registered as version 1 (alias challenger)."""
    return train_model(tiny(max_epochs=2), dataset, tracking, tmp_path_factory.mktemp("checkpoints"), MODEL)


@pytest.fixture
def fresh_tracking(tmp_path: Path) -> TrackingTarget:
    """A store of the test's own, for tests that register versions and move aliases."""
    return TrackingTarget(f"sqlite:///{tmp_path / 'own-mlflow.db'}", tmp_path / "own-mlartifacts")
