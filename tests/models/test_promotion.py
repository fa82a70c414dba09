from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.errors import ModelNotFoundError
from models.evaluation import EvalOptions
from models.promotion import gate
from models.promotion_job import promote
from models.train_job import train_model
from tests.models.conftest import MODEL, tiny


@pytest.mark.parametrize(("challenger", "champion", "passed", "reason"), [
    ({"parse_rate": 0.9, "perplexity": 10.0}, None, True, "no champion yet"),
    ({"parse_rate": 0.9, "perplexity": 10.4}, {"parse_rate": 0.9, "perplexity": 10.0}, True,
     "parse rate 0.900 >= 0.900 and perplexity 10.400 <= 10.500"),
    ({"parse_rate": 0.85, "perplexity": 9.0}, {"parse_rate": 0.9, "perplexity": 10.0}, False,
     "parse rate 0.850 is lower than the champion's 0.900"),
    ({"parse_rate": 0.95, "perplexity": 10.6}, {"parse_rate": 0.9, "perplexity": 10.0}, False,
     "perplexity 10.600 is more than 5% worse than the champion's 10.000 (limit 10.500)"),
    # Different tokenizers: a per-token perplexity three times the champion's, but fewer bits per character wins.
    ({"parse_rate": 1.0, "perplexity": 30.0, "bits_per_char": 1.4}, {"parse_rate": 1.0, "perplexity": 10.0,
     "bits_per_char": 2.1}, True, "parse rate 1.000 >= 1.000 and bits per char 1.400 <= 2.205"),
    ({"parse_rate": 1.0, "perplexity": 5.0, "bits_per_char": 2.3}, {"parse_rate": 1.0, "perplexity": 10.0,
     "bits_per_char": 2.1}, False, "bits per char 2.300 is more than 5% worse than the champion's 2.100 (limit 2.205)"),
])
def test_gate(challenger: dict[str, float], champion: dict[str, float] | None, passed: bool, reason: str) -> None:
    result = gate(challenger, champion)
    assert result.passed is passed and result.reasons == [reason]


def test_promotion_flow(fresh_tracking: TrackingTarget, dataset: DatasetVersion, tmp_path: Path) -> None:
    tracking = fresh_tracking
    train_model(tiny(max_epochs=2), dataset, tracking, tmp_path, MODEL)
    client = MlflowClient(tracking.uri)
    options = EvalOptions(samples=4, batch_size=4)
    steps = dataset.splits["test"]
    first = promote(tracking, MODEL, steps, "test", "d1", options, None)
    assert first.promoted and first.gate.reasons == ["no champion yet"] and first.champion is None
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first.challenger.split("/")[1]

    again = promote(tracking, MODEL, steps, "test", "d1", options, None)
    assert not again.promoted and again.gate.reasons == [f"version {first.challenger.split('/')[1]} is already the champion"]

    # A challenger that learned nothing (learning rate 0) must not replace a trained champion...
    worse = train_model(tiny(learning_rate=0.0), dataset, tracking, tmp_path, MODEL)
    refused = promote(tracking, MODEL, steps, "test", "d1", options, None)
    assert not refused.promoted and not refused.gate.passed
    assert any("bits per char" in reason for reason in refused.gate.reasons)
    assert refused.champion_metrics is not None and refused.challenger_metrics["bits_per_char"] > 1.05 * refused.champion_metrics["bits_per_char"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first.challenger.split("/")[1]

    # ...unless forced, which is recorded on the version.
    forced = promote(tracking, MODEL, steps, "test", "d1", options, None, force=True)
    assert forced.promoted and forced.forced
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == worse.registered.version
    tag = client.get_model_version(MODEL, worse.registered.version).tags["cyoa.forced_promotion"]
    assert "bits per char" in tag


def test_promote_without_challenger(tmp_path: Path, dataset: DatasetVersion) -> None:
    target = TrackingTarget(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "a")
    with pytest.raises(ModelNotFoundError, match="no challenger to promote: train one with `cyoa train`"):
        promote(target, MODEL, dataset.splits["test"], "test", "d", EvalOptions(samples=1), None)
