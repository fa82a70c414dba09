from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from data.build import BuildOptions, build_dataset, write_build
from data.sources import load_source
from data.tracking import TrackingTarget
from data.versioning import DATA_EXPERIMENT, DIGEST_TAG, log_build
from tests.data.test_build import many_stories
from tests.stories import story_dict, write_story


def test_build_is_logged_to_a_real_tracking_store(tmp_path: Path, public_data: Path) -> None:
    stories_dir = tmp_path / "stories"
    files = [write_story(stories_dir, story_dict(f"story_{n:02d}")) for n in range(10)]
    build = build_dataset(many_stories(10), [load_source("fifi", public_data)], BuildOptions())
    written = write_build(build, tmp_path / "datasets")
    target = TrackingTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")

    run_id = log_build(build, written, files, target)

    client = MlflowClient(tracking_uri=target.uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == DATA_EXPERIMENT
    assert experiment.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    assert run.data.tags[DIGEST_TAG] == build.digest
    assert run.data.params["sources"] == "bundled,fifi"
    assert run.data.params["split_seed"] == "1234"
    assert run.data.metrics["stories"] == 10 and run.data.metrics["scenes"] == 90
    assert run.data.metrics["examples_extra_fifi"] == len(build.sources[0].steps)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert inputs["cyoa-stories"].dataset.digest == build.digest
    assert inputs["cyoa-stories-test"].dataset.digest == build.split_digest("test")
    assert {tag.value for d in inputs.values() for tag in d.tags if tag.key == "mlflow.data.context"} == {
        "dataset", "train", "validation", "test"}
    processed = {a.path for a in client.list_artifacts(run_id, "processed")}
    assert processed == {"processed/train.jsonl", "processed/validation.jsonl", "processed/test.jsonl",
                         "processed/metadata.json"}
    assert len(client.list_artifacts(run_id, "original/stories")) == 10
    assert {a.path for a in client.list_artifacts(run_id, "original/fifi")} == {"original/fifi/fifi.html",
                                                                                 "original/fifi/LICENSE"}
    local = Path(client.download_artifacts(run_id, "processed/train.jsonl", str(tmp_path / "dl")))
    assert local.read_text(encoding="utf-8") == build.split_jsonl("train")


def test_the_same_inputs_log_the_same_digest(tmp_path: Path) -> None:
    target = TrackingTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    digests = []
    for attempt in range(2):
        build = build_dataset(many_stories(6), [], BuildOptions())
        run_id = log_build(build, write_build(build, tmp_path / f"d{attempt}"), [], target)
        digests.append(MlflowClient(target.uri).get_run(run_id).data.tags[DIGEST_TAG])
    assert digests[0] == digests[1]


def test_find_dataset_by_digest_prefix_or_latest(tmp_path: Path) -> None:
    import pytest

    from data.versioning import find_dataset
    from engine.errors import DatasetError

    target = TrackingTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    assert find_dataset(target, tmp_path / "datasets", "latest") is None
    first = build_dataset(many_stories(6), [], BuildOptions())
    log_build(first, write_build(first, tmp_path / "datasets"), [], target)
    second = build_dataset(many_stories(8), [], BuildOptions())
    run_id = log_build(second, write_build(second, tmp_path / "datasets"), [], target)

    latest = find_dataset(target, tmp_path / "datasets", "latest")
    assert latest is not None and latest.digest == second.digest and latest.run_id == run_id
    assert latest.splits == second.splits
    by_prefix = find_dataset(target, tmp_path / "elsewhere", first.digest[:6])  # no local copy: downloaded
    assert by_prefix is not None and by_prefix.digest == first.digest and by_prefix.splits == first.splits
    assert (tmp_path / "elsewhere" / first.digest / "train.jsonl").exists()
    with pytest.raises(DatasetError, match="no dataset version ffffffff"):
        find_dataset(target, tmp_path / "datasets", "ffffffff")
    with pytest.raises(DatasetError, match="give a digest"):
        find_dataset(target, tmp_path / "datasets", "x' OR 1=1")
