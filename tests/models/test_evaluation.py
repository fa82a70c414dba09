from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from models.evaluation import (
    EvalOptions,
    MiniLM,
    Sample,
    distinct_n,
    evaluate,
    flat_metrics,
    repeated_ngram_rate,
    summarise,
)
from models.registry import load_storyteller, log_evaluation
from models.train_job import TrainOutcome
from tests.models.conftest import MODEL


@pytest.fixture(scope="session")
def minilm() -> MiniLM:
    return MiniLM()


def test_text_statistics() -> None:
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert repeated_ngram_rate("a b c d a b c d", 4) == pytest.approx(1 / 5)
    assert repeated_ngram_rate("one two three", 4) == 0.0


def test_summary_of_samples() -> None:
    samples = [Sample("a", "mecha", "s", "act", "ref", "x", True, "", "one two three", ["Run for the exit", "Hide"],
                      0.5, 0.7),
               Sample("b", "mecha", "s", "act", "ref", "y", False, "no narration", "four five", [], 0.1, 0.3)]
    metrics = summarise(samples)
    assert metrics["parse_rate"] == 0.5 and metrics["mean_words"] == 2.5
    assert metrics["coherence"] == pytest.approx(0.3) and metrics["reference_coherence"] == pytest.approx(0.5)
    assert metrics["choice_words"] == 2.5 and metrics["choices_in_range"] == 0.5 and metrics["second_person"] == 0.0


def test_minilm_embeds_offline(minilm: MiniLM) -> None:
    vectors = minilm.embed(["The dragon sleeps under the school.", "A dragon naps beneath the academy.",
                            "Quarterly tax filing deadlines."])
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3


def test_evaluate_a_trained_model_and_log_it(trained: TrainOutcome, tracking: TrackingTarget,
                                             dataset: DatasetVersion, minilm: MiniLM) -> None:
    storyteller = load_storyteller(tracking, f"models:/{MODEL}@challenger")
    steps = dataset.splits["test"]
    report = evaluate(storyteller, steps, "test", EvalOptions(samples=6, batch_size=3), minilm)
    metrics = report.metrics
    assert 1 < metrics["perplexity"] < 1024 * 2  # a trained model beats a uniform guess over its vocabulary
    assert 0 <= metrics["parse_rate"] <= 1 and metrics["samples"] == 6
    assert -1 <= metrics["coherence"] <= 1 and metrics["reference_coherence"] > 0.2
    assert set(report.per_genre) == {s.genre for s in steps}
    assert all(not math.isnan(m["perplexity"]) for m in report.per_genre.values())
    again = evaluate(storyteller, steps, "test", EvalOptions(samples=6, batch_size=3), minilm)
    assert again.metrics == metrics  # seeded: the same figures twice

    run_id = log_evaluation(tracking, report, "test", "abc123")
    run = MlflowClient(tracking.uri).get_run(run_id)
    assert run_id == trained.registered.run_id
    assert run.data.metrics["test_perplexity"] == pytest.approx(metrics["perplexity"])
    assert run.data.metrics["test_parse_rate"] == metrics["parse_rate"]
    genre = steps[0].genre
    assert f"test_{genre}_perplexity" in run.data.metrics
    assert run.data.tags["cyoa.eval.test.data_digest"] == "abc123"
    artifacts = [a.path for a in MlflowClient(tracking.uri).list_artifacts(run_id, "evaluation")]
    assert artifacts == ["evaluation/test_samples.json"]
    assert set(flat_metrics(report, "test")) <= set(run.data.metrics)
