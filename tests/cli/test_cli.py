from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cyoa.cli import app
from data import STORIES_DIR
from tests.stories import story_dict, write_story

runner = CliRunner()


def test_validate_the_bundled_stories_exits_0() -> None:
    result = runner.invoke(app, ["data", "validate"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stderr


def test_validate_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    good = write_story(tmp_path / "stories", story_dict("good_one"))
    broken = story_dict("broken_one")
    broken["scenes"][0]["choices"][1]["next"] = "s99"
    broken["genre"] = "western"
    bad = write_story(tmp_path / "stories", broken)
    steps = tmp_path / "stories" / "extra.jsonl"
    steps.write_text('{"id": 1}\n', encoding="utf-8")
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "stories"), str(tmp_path / "nope.json")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"{tmp_path / 'nope.json'}: no such file or folder" in lines
    assert f"{bad}: story broken_one, scene s1, choices[1]: leads to unknown scene 's99'" in lines
    assert f"{bad}: story broken_one, scene s3: not reachable from the opening scene s1" in lines
    assert any(line.startswith(f"{bad}: story broken_one, genre: unknown genre 'western'") for line in lines)
    assert f"{steps}: line 1, id: input should be a valid string" in lines
    assert not any(str(good) in line for line in lines)


def test_build_json_reports_the_dataset_and_logs_it(_isolated_home: Path) -> None:
    result = runner.invoke(app, ["data", "build", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["stories"] == len(list(STORIES_DIR.glob("*.json")))
    assert stats["examples"] == stats["examples_train"] + stats["examples_validation"] + stats["examples_test"]
    run = MlflowClient(f"sqlite:///{(_isolated_home / 'mlflow.db').resolve()}").get_run(stats["run_id"])
    assert run.data.tags["cyoa.dataset_digest"] == stats["digest"]
    assert (_isolated_home / "datasets" / stats["digest"] / "test.jsonl").exists()
    assert (_isolated_home / "mlartifacts").is_dir()
    again = json.loads(runner.invoke(app, ["data", "build", "--json"]).stdout)
    assert again["digest"] == stats["digest"] and again["run_id"] != stats["run_id"]


def test_build_with_extra_sources_adds_to_train_only(public_data: Path) -> None:
    plain = json.loads(runner.invoke(app, ["data", "build", "--json"]).stdout)
    result = runner.invoke(app, ["data", "build", "--json", "--source", "aidungeon", "--source", "fifi"],
                           env={"CYOA_PUBLIC_DATA_DIR": str(public_data)})
    extra = json.loads(result.stdout)
    added = extra["examples_extra_aidungeon"] + extra["examples_extra_fifi"]
    assert added > 0
    assert extra["examples_train"] == plain["examples_train"] + added
    assert extra["split_digests"]["test"] == plain["split_digests"]["test"]
    assert extra["digest"] != plain["digest"]


def test_broken_story_stops_the_build_and_writes_nothing(tmp_path: Path, _isolated_home: Path) -> None:
    broken = story_dict()
    broken["scenes"][2]["text"] = "Too short."
    write_story(tmp_path / "stories", broken)
    result = runner.invoke(app, ["data", "build", "--stories", str(tmp_path / "stories")])
    assert result.exit_code == 1
    assert "scene s3, text: 2 words, needs 40-130" in result.stderr
    assert not _isolated_home.exists()


def test_unknown_source_and_bad_fractions_are_usage_errors() -> None:
    result = runner.invoke(app, ["data", "build", "--source", "nope"])
    assert result.exit_code == 2 and "unknown source(s) nope" in result.output
    result = runner.invoke(app, ["data", "build", "--test-fraction", "0.7", "--validation-fraction", "0.5"])
    assert result.exit_code == 2 and "sum to less than 1" in result.output


def test_missing_public_data_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "build", "--source", "fifi"], env={"CYOA_PUBLIC_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "fifi.html: cannot read the gamebook" in result.stderr
