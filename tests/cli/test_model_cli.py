from __future__ import annotations

import json
from pathlib import Path

from cyoa.cli import app
from tests.commands import run_json, runner


def test_train_evaluate_promote(few_stories: Path) -> None:
    trained = run_json("train", "--preset", "tiny", "--max-epochs", "1", "--json")
    assert trained["model"] == "cyoa-storyteller/1" and trained["alias"] == "challenger"
    assert trained["stop_reason"] == "max epochs" and trained["preset"] == "tiny"

    result = runner.invoke(app, ["evaluate", "--samples", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert "no champion yet: evaluating models:/cyoa-storyteller@challenger" in result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "cyoa-storyteller/1" and report["data"] == "test"
    assert {"perplexity", "parse_rate", "coherence", "reference_coherence", "distinct_2"} <= set(report["metrics"])

    decision = run_json("promote", "--samples", "3", "--json")
    assert decision["promoted"] is True and decision["reasons"] == ["no champion yet"]

    again = runner.invoke(app, ["bootstrap"])
    assert again.exit_code == 0 and "champion: cyoa-storyteller/1" in again.stdout


def test_evaluate_without_any_model_says_what_to_run(few_stories: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--samples", "1"])
    assert result.exit_code == 1
    assert "no registered model 'cyoa-storyteller'" in result.stderr and "cyoa train" in result.stderr


def test_evaluate_rejects_a_broken_data_file(tmp_path: Path) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text('{"id": "x"}\n')
    result = runner.invoke(app, ["evaluate", "--data", str(data)])
    assert result.exit_code == 1
    assert f"{data}: line 1, step x, genre: missing (required)" in result.stderr


def test_resume_with_nothing_to_resume() -> None:
    result = runner.invoke(app, ["train", "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.stderr


def test_bootstrap_trains_evaluates_and_promotes_when_there_is_no_champion(few_stories: Path) -> None:
    result = runner.invoke(app, ["bootstrap", "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    assert "no champion yet: training the tiny starter model" in result.stderr
    assert "cyoa-storyteller/1: promoted: no champion yet" in result.stdout
    again = runner.invoke(app, ["bootstrap"])
    assert again.exit_code == 0 and "champion: cyoa-storyteller/1" in again.stdout
