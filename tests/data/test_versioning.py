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
