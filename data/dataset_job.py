"""The whole dataset build as one job: validate, build, write, log. Used by ``cyoa data build`` and by
training when no dataset version exists yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data.build import BuildOptions, DatasetBuild, build_dataset, write_build
from data.sources import load_source
from data.tracking import TrackingTarget
from data.validation import load_stories, story_files
from data.versioning import DatasetVersion, log_build
from engine.errors import DatasetError, InvalidDataError


@dataclass(frozen=True)
class BuiltDataset:
    build: DatasetBuild
    run_id: str
    folder: Path

    @property
    def version(self) -> DatasetVersion:
        return DatasetVersion(self.build.digest, self.folder, self.run_id, self.build.splits)


def build_dataset_version(stories_dir: Path, sources: list[str], public_dir: Path, options: BuildOptions,
                          datasets_dir: Path, target: TrackingTarget) -> BuiltDataset:
    """Validate every story (any problem stops the job before anything is written), then build and log."""
    stories, issues = load_stories(stories_dir)
    if issues:
        raise InvalidDataError(issues)
    if not stories:
        raise DatasetError(f"{stories_dir}: no story files (*.json) found")
    extras = [load_source(name, public_dir) for name in dict.fromkeys(sources)]
    build = build_dataset(stories, extras, options)
    folder = write_build(build, datasets_dir)
    run_id = log_build(build, folder, list(story_files([stories_dir])), target)
    return BuiltDataset(build, run_id, folder)
