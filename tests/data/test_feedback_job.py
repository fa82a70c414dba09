"""``cyoa feedback export`` end to end: a real SQLite game store, a real MLflow store, the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cyoa.cli import app
from cyoa.settings import Settings
from data.build import SPLITS
from data.feedback import PREFERENCES_FILE, pairs_from_jsonl
from data.feedback_job import PARENT_TAG
from data.versioning import DATA_EXPERIMENT, DIGEST_TAG, find_dataset
from engine.fakes import FakeWriter
from engine.turns import StoryEngine
from tests.data.games import cheer, new_engine, play, rate, save, use_few_stories
from tests.data.test_feedback import GARBLED, scripted

runner = CliRunner()
PLAYERS = ("p-ana-4711", "p-bo-4712", "p-zed-4713", "p-cy-4714")


@pytest.fixture
def few_stories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_few_stories(tmp_path / "stories", monkeypatch)


def export(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["feedback", "export", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_export_writes_and_logs_a_new_version_once(few_stories: Path) -> None:
    engine = new_engine()
    ana, bo, zed, cy = PLAYERS
    first = asyncio.run(play(engine, [{bo: 0}, {ana: 1, bo: 1, zed: 1}, {zed: 2}], players=PLAYERS, owner=ana))
    rate(first, bo, 1, stars=5)
    cheer(first, [1], [ana])
    cheer(first, [2], [ana, bo, cy])
    rate(first, zed, 2, thumb="down")
    asyncio.run(engine.retry(first))
    cheer(first, [3], [bo])  # with the owner's retry, two players prefer the new scene 3
    asyncio.run(save([first], opted_out=(zed,)))

    result = export()
    settings = Settings()
    counts = result["counts"]
    assert isinstance(counts, dict)
    assert result["created"] is True and counts["steps_kept"] == 2 and counts["steps_dropped_opted_out"] == 1
    assert counts["ratings_ignored_opted_out"] == 1 and counts["pairs_kept_retry"] == 1
    digest, parent = str(result["digest"]), str(result["parent"])

    # The files: the parent's splits, the harvested steps added to train only, and the preferences.
    folder = settings.datasets_dir / digest
    base = find_dataset(settings.tracking, settings.datasets_dir, parent)
    assert base is not None
    version = find_dataset(settings.tracking, settings.datasets_dir, "latest")
    assert version is not None and version.digest == digest
    assert version.splits["validation"] == base.splits["validation"] and version.splits["test"] == base.splits["test"]
    harvested = version.splits["train"][len(base.splits["train"]):]
    assert version.splits["train"][: len(base.splits["train"])] == base.splits["train"]
    assert [s.id.split("@")[0] for s in harvested] == [f"play/{first.id}/0>1", f"play/{first.id}/1>2"]
    pairs = pairs_from_jsonl((folder / PREFERENCES_FILE).read_text(encoding="utf-8"))
    assert len(pairs) == counts["pairs_kept"] and {p.kind for p in pairs} == {"vote", "retry"}
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not any(player in text for player in PLAYERS), path.name

    # MLflow: lineage, counts per filter, the digest, and the files.
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(str(result["run_id"]))
    assert run.data.tags[DIGEST_TAG] == digest and run.data.tags[PARENT_TAG] == parent
    assert run.data.tags["cyoa.kind"] == "feedback" and run.data.params["parent_digest"] == parent
    assert run.data.params["min_rating"] == "3.0" and run.data.params["harvested_split"] == "train"
    assert run.data.params["min_supporters"] == "2" and run.data.params["max_player_share"] == "0.25"
    assert run.data.metrics["steps_dropped_opted_out"] == 1 and run.data.metrics["steps_kept"] == 2
    assert run.data.metrics["examples_train"] == len(version.splits["train"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "processed")} == {
        *(f"processed/{split}.jsonl" for split in SPLITS), "processed/preferences.jsonl", "processed/metadata.json"}
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert inputs["cyoa-stories"] == digest and "cyoa-preferences" in inputs

    # Exporting again with no new play changes nothing: same digest, no new run.
    experiment = client.get_experiment_by_name(DATA_EXPERIMENT)
    assert experiment is not None
    runs_before = len(client.search_runs([experiment.experiment_id]))
    again = runner.invoke(app, ["feedback", "export"])
    assert again.exit_code == 0, again.output
    assert f"unchanged: dataset {digest}" in again.stdout and "no new version" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == runs_before

    # New play, and a player who opts out later: the next export starts again from the same base, so it adds
    # the new game and drops what the player's vote had put in.
    second = asyncio.run(play(engine, [{ana: 0}], players=PLAYERS, owner=ana))
    cheer(second, [1], [ana, cy])
    asyncio.run(save([second], opted_out=(bo,)))
    latest = export()
    assert latest["created"] is True and latest["parent"] == parent and latest["digest"] != digest
    assert json.loads((settings.datasets_dir / str(latest["digest"]) / "metadata.json").read_text())[
        "feedback"]["parent"] == parent
    newest = find_dataset(settings.tracking, settings.datasets_dir, "latest")
    assert newest is not None
    assert [s.id.split("@")[0] for s in newest.splits["train"][len(base.splits["train"]):]] == [
        f"play/{first.id}/1>2", f"play/{second.id}/0>1"]


def test_export_says_what_is_missing(few_stories: Path) -> None:
    result = runner.invoke(app, ["feedback", "export"])
    assert result.exit_code == 1 and "no game database yet" in result.stderr
    asyncio.run(save([]))
    empty = runner.invoke(app, ["feedback", "export"])
    assert empty.exit_code == 0 and "nothing to export" in empty.stdout
    bad = runner.invoke(app, ["feedback", "export", "--min-rating", "7"])
    assert bad.exit_code == 2 and "not a star rating" in bad.output


def cells(line: str) -> tuple[str, str]:
    """The two cells of a row of the printed counts table."""
    _, what, count, _ = (cell.strip() for cell in line.split("│"))
    return what, count


def test_export_reports_what_each_trust_rule_dropped(few_stories: Path) -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    troll = asyncio.run(play(engine, [{"p-troll": 0}], players=["p-troll"], owner="p-troll"))
    cheer(troll, [1], ["p-troll"])  # one account alone
    garbled = asyncio.run(play(engine, []))
    writer.script = [scripted(GARBLED)]
    asyncio.run(engine.choose(garbled, 0))
    cheer(garbled, [1])
    tables = [asyncio.run(play(engine, [{"p-ana": 0, "p-bo": 0}])) for _ in range(3)]  # one table, three games
    for game in tables:
        cheer(game, [1])
    asyncio.run(save([troll, garbled, *tables]))

    result = runner.invoke(app, ["feedback", "export", "--player-cap-floor", "1"])
    assert result.exit_code == 0, result.output
    shown = dict(cells(line) for line in result.stderr.splitlines() if line.count("│") == 3)
    assert {row: shown[row] for row in ("steps kept", "steps dropped unsupported", "steps dropped garbled",
                                        "steps dropped player cap", "steps most by one player",
                                        "pairs dropped unsupported", "pairs dropped player cap")} == {
        "steps kept": "1", "steps dropped unsupported": "1", "steps dropped garbled": "1",
        "steps dropped player cap": "2", "steps most by one player": "1", "pairs dropped unsupported": "2",
        "pairs dropped player cap": "5"}
    settings = Settings()
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(DATA_EXPERIMENT)
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id], "tags.`cyoa.kind` = 'feedback'")
    metrics = run.data.metrics
    assert (metrics["steps_dropped_unsupported"], metrics["steps_dropped_garbled"]) == (1, 1)
    assert (metrics["steps_dropped_player_cap"], metrics["pairs_dropped_player_cap"]) == (2, 5)
    assert run.data.params["player_cap_floor"] == "1" and run.data.params["text_checks"] == "1"

    # The operator's own terminal, trusted: one supporter, no cap.
    trusting = export("--min-supporters", "1", "--max-player-share", "1")
    assert trusting["counts"]["steps_kept"] == 4  # type: ignore[index]
    refused = runner.invoke(app, ["feedback", "export", "--min-supporters", "-1"])
    assert refused.exit_code == 2
