"""MLflow's artifacts go to $CYOA_HOME/mlartifacts, never to ./mlruns of whatever directory cyoa runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands import run_json

MLFLOW_LEFTOVERS = {"mlruns", "mlartifacts", "mlflow.db"}


def test_a_local_tracking_database_writes_nothing_into_the_working_directory(
        few_stories: Path, tmp_path: Path, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default store lives in CYOA_HOME; a database given by MLFLOW_TRACKING_URI has no artifact store of
    # its own, which is where MLflow falls back to ./mlruns.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere / 'mlflow.db'}")
    assert Path.cwd() == tmp_path

    run_json("data", "build", "--json")
    trained = run_json("train", "--preset", "tiny", "--max-epochs", "1", "--json")
    report = run_json("evaluate", "--samples", "1", "--json")

    assert not MLFLOW_LEFTOVERS & {path.name for path in tmp_path.iterdir()}
    artifacts = _isolated_home / "mlartifacts"
    assert list(artifacts.rglob("MLmodel")), "the registered version's model"
    assert list(artifacts.rglob("processed/train.jsonl")), "the dataset version's splits"
    assert list(artifacts.rglob("evaluation/test_samples.json")), "the evaluation's samples"
    assert trained["model"] == report["model"] == "cyoa-storyteller/1"
