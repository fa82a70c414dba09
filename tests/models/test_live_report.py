"""Live figures: computed from games played by the real engine and saved in a real SQLite store, logged on the
MLflow run of a real registered version, and used by ``promote --live``."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cyoa.cli import app
from cyoa.report_cli import read_live_report
from cyoa.settings import Settings
from data.steps import steps_to_jsonl
from data.store import SQLiteGameStore
from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.fakes import FakeWriter
from engine.game import Game, Rating
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote
from models.evaluation import EvalOptions
from models.live_report import LiveReport, live_report, vote_margin
from models.live_tracking import PLOT_ARTIFACT, log_live, registered_run
from models.promotion import Gate, LiveRules, combine, live_gate
from models.promotion_job import LIVE_GATE_TAG, LiveCheck, promote
from models.registry import CHALLENGER, CHAMPION, log_storyteller, set_alias
from models.storyteller import Storyteller
from models.train_job import TrainOutcome
from tests.models.conftest import MODEL

V1 = f"{MODEL}/1"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
runner = CliRunner()


# --- games played by the real engine ------------------------------------------------------------
async def voted_game(version: str) -> tuple[Game, dict[str, dict[str, int]]]:
    """mecha, three players: a 2-1 vote (margin 1/3), a 1-1 tie broken by a draw (margin 0), an open vote
    (not counted); stars 4 and 5, thumbs up, up and down, and a comment."""
    engine = StoryEngine(FakeWriter(model_version=version))
    game = await engine.start("channel-1", "mecha", "A pilot wakes in a silent hangar.", ["ana", "ben", "chi"])
    rules = VoteRules(window_seconds=30)
    for ballot in ({"ana": 0, "ben": 0, "chi": 1}, {"ana": 1, "ben": 2}):
        open_vote(game, rules, NOW)
        for player, choice in ballot.items():
            cast(game, player, choice, NOW)
        result = close_vote(game, rules, NOW, seed=7)
        assert result.closed and result.choice is not None
        await engine.choose(game, result.choice)
    open_vote(game, rules, NOW)
    cast(game, "ana", 0, NOW)
    game.ratings += [Rating(player="ana", scene=0, stars=4, model_version=version),
                     Rating(player="ben", scene=1, stars=5, model_version=version),
                     Rating(player="chi", scene=1, thumb="up", model_version=version),
                     Rating(player="ana", scene=2, thumb="down", model_version=version),
                     Rating(player="ben", scene=2, thumb="up", model_version=version),
                     Rating(player="chi", scene=2, comment="more mecha please", model_version=version)]
    return game, engine.stats.drain()


async def repaired_game(version: str) -> tuple[Game, dict[str, dict[str, int]]]:
    """idol, one player: three malformed answers, so the opening is a repair; a choice without a vote; 2 stars."""
    engine = StoryEngine(FakeWriter(["no scene here"] * 3, model_version=version))
    game = await engine.start("terminal", "idol", "A trainee debuts on a rainy rooftop stage.", ["you"])
    await engine.choose(game, 0)
    game.ratings.append(Rating(player="you", scene=1, stars=2, model_version=version))
    return game, engine.stats.drain()


async def rated_games(version: str, count: int, stars: int, thumb: str) -> list[Game]:
    """``count`` one-scene games, each rated once with ``stars`` and once with ``thumb``."""
    engine = StoryEngine(FakeWriter(model_version=version))
    games = []
    for _ in range(count):
        game = await engine.start("channel-2", "fantasy", "A dragon wakes under the school.", ["ana"])
        game.ratings += [Rating(player="ana", scene=0, stars=stars, model_version=version),
                         Rating(player="ana", scene=0, thumb=thumb, model_version=version)]
        games.append(game)
    return games


async def save_played(path: Path, version: str) -> None:
    """The voted and the repaired game of ``version`` and a one-scene game of ``fake/1``, in the store."""
    async with SQLiteGameStore(path) as store:
        for play in (voted_game(version), repaired_game(version)):
            game, counts = await play
            await store.save(game)
            await store.add_output_counts(counts)
        fake = StoryEngine(FakeWriter())
        await store.save(await fake.start("channel-3", "mecha", "A courier crosses a neon city at dawn."))
        await store.add_output_counts(fake.stats.drain())


async def report_from(path: Path) -> LiveReport:
    async with SQLiteGameStore(path) as store:
        return live_report(await store.all_games(), await store.output_counts())


# --- the figures ----------------------------------------------------------------------------------
def test_figures_from_a_real_store_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "cyoa.db"
    asyncio.run(save_played(path, V1))
    report = asyncio.run(report_from(path))
    assert list(report) == ["cyoa-storyteller/1", "fake/1"]
    v1 = report[V1]
    assert v1.per_genre["mecha"].metrics() == pytest.approx({
        "games": 1, "scenes": 3, "repaired_scenes": 0, "star_ratings": 2, "mean_rating": 4.5, "thumbs_up": 2,
        "thumbs_down": 1, "thumbs_ratio": 2 / 3, "closed_votes": 2, "mean_vote_margin": (1 / 3 + 0) / 2,
        "tie_breaks": 1})
    # No vote, no thumbs: those means are left out, not reported as zero.
    assert v1.per_genre["idol"].metrics() == {
        "games": 1, "scenes": 2, "repaired_scenes": 1, "star_ratings": 1, "mean_rating": 2.0, "thumbs_up": 0,
        "thumbs_down": 0, "closed_votes": 0, "tie_breaks": 0}
    # 3 + 4 answers checked (the repaired game's opening failed three times, then was repaired).
    assert v1.metrics() == pytest.approx({
        "games": 2, "scenes": 5, "repaired_scenes": 1, "star_ratings": 3, "mean_rating": 11 / 3, "thumbs_up": 2,
        "thumbs_down": 1, "thumbs_ratio": 2 / 3, "closed_votes": 2, "mean_vote_margin": 1 / 6, "tie_breaks": 1,
        "outputs": 7, "parse_failures": 3, "parse_failure_rate": 3 / 7, "rejections": 3, "repairs": 1})
    flat = v1.flat_metrics()
    assert flat["live_games"] == 2 and flat["live_mecha_tie_breaks"] == 1 and flat["live_idol_repaired_scenes"] == 1
    assert "live_idol_thumbs_ratio" not in flat and "live_idol_outputs" not in flat
    assert report["fake/1"].metrics()["games"] == 1 and report["fake/1"].metrics()["outputs"] == 1


def test_opted_out_players_ratings_and_votes_are_left_out(tmp_path: Path) -> None:
    """As in the harvest: chi opted out, so chi's 👍 and comment go, and chi's vote leaves the 2-1 vote 2-0."""
    path = tmp_path / "cyoa.db"

    async def scenario() -> None:
        async with SQLiteGameStore(path) as store:
            game, _ = await voted_game(V1)
            await store.save(game)
            await store.set_opt_out("chi", True)

    asyncio.run(scenario())
    figures = read_live_report(path)[V1].per_genre["mecha"].metrics()  # what `report` and `promote --live` read
    assert figures == pytest.approx({
        "games": 1, "scenes": 3, "repaired_scenes": 0, "star_ratings": 2, "mean_rating": 4.5, "thumbs_up": 1,
        "thumbs_down": 1, "thumbs_ratio": 0.5, "closed_votes": 2, "mean_vote_margin": (1.0 + 0) / 2,
        "tie_breaks": 1})
    # A vote only opted-out players cast has no margin at all.
    game, _ = asyncio.run(voted_game(V1))
    assert live_report([game], {}, {"ana", "ben", "chi"})[V1].metrics()["closed_votes"] == 0


@pytest.mark.parametrize(("ballot", "margin"), [
    ({"a": 0, "b": 0, "c": 0}, 1.0), ({"a": 0, "b": 0, "c": 1, "d": 2}, 0.25), ({"a": 0, "b": 1}, 0.0), ({}, None),
])
def test_vote_margin(ballot: dict[str, int], margin: float | None) -> None:
    async def scene_with_votes() -> float | None:
        game = await StoryEngine(FakeWriter()).start("c", "mecha", "A pilot wakes in a silent hangar.")
        open_vote(game, VoteRules(), NOW)
        for player, choice in ballot.items():
            cast(game, player, choice, NOW)
        return vote_margin(game.current)

    assert asyncio.run(scene_with_votes()) == margin


# --- the live gate --------------------------------------------------------------------------------
@pytest.mark.parametrize(("challenger", "champion", "passed", "reasons"), [
    ({"games": 4}, None, False,
     ["live: not enough live games: m/2 wrote 4, the live gate needs at least 5; play it "
      "(`cyoa play --new --model models:/m/2`) or promote without --live"]),
    ({"games": 5}, None, True, ["live: 5 games >= 5; no champion to compare with"]),
    ({"games": 5, "mean_rating": 3.8, "thumbs_ratio": 0.7}, {"games": 9, "mean_rating": 4.0, "thumbs_ratio": 0.75},
     True, ["live: 5 games >= 5; mean rating 3.80 >= 3.75; thumbs-up share 0.70 >= 0.70"]),
    ({"games": 6, "mean_rating": 3.7, "thumbs_ratio": 0.6}, {"games": 9, "mean_rating": 4.0, "thumbs_ratio": 0.75},
     False, ["live: mean rating 3.70 is more than 0.25 stars below the champion's 4.00 (limit 3.75)",
             "live: thumbs-up share 0.60 is more than 0.05 below the champion's 0.75 (limit 0.70)"]),
    ({"games": 6}, {"games": 9, "mean_rating": 4.0}, False,
     ["live: the challenger has no mean rating yet (the champion's is 4.00)"]),
    ({"games": 6, "mean_rating": 1.0}, {"games": 0}, True,
     ["live: 6 games >= 5; no champion mean rating to compare with; no champion thumbs-up share to compare with"]),
])
def test_live_gate(challenger: dict[str, float], champion: dict[str, float] | None, passed: bool,
                   reasons: list[str]) -> None:
    result = live_gate("m/2", challenger, champion, LiveRules())
    assert result.passed is passed and result.reasons == reasons


def test_combined_gate_keeps_the_failed_reasons() -> None:
    offline, live_ok, live_failed = Gate(True, ["offline ok"]), Gate(True, ["live ok"]), Gate(False, ["too few"])
    assert combine(offline, live_ok) == Gate(True, ["offline ok", "live ok"])
    assert combine(offline, live_failed) == Gate(False, ["too few"])


# --- MLflow ---------------------------------------------------------------------------------------
def register_copy(checkpoint: Path, target: TrackingTarget, folder: Path) -> str:
    """A copy of the trained tiny storyteller, registered as a new version of MODEL in ``target``."""
    shutil.copytree(checkpoint, folder)
    with mlflow.start_run(experiment_id=target.experiment_id("tests")):
        return log_storyteller(folder, Storyteller.load(folder).card, MODEL).version


def test_report_logs_on_the_run_of_the_registered_version(trained: TrainOutcome, tmp_path: Path) -> None:
    settings = Settings()
    assert register_copy(trained.checkpoint, settings.tracking, tmp_path / "copy") == "1"
    client = MlflowClient(settings.tracking_uri)
    run_id = client.get_model_version(MODEL, "1").run_id
    asyncio.run(save_played(settings.home / "cyoa.db", V1))

    shown = runner.invoke(app, ["report", "--no-log"])
    assert shown.exit_code == 0, shown.output
    assert "live figures" in shown.stdout and "cyoa-storyteller/1" in shown.stdout and "fake/1" in shown.stdout
    assert not [key for key in client.get_run(run_id).data.metrics if key.startswith("live_")]

    result = runner.invoke(app, ["report", "--json"])
    assert result.exit_code == 0, result.output
    versions = json.loads(result.stdout)["versions"]
    assert versions[V1]["logged"] is True and versions[V1]["run_id"] == run_id
    assert versions[V1]["metrics"]["games"] == 2 and versions[V1]["per_genre"]["mecha"]["tie_breaks"] == 1
    assert versions["fake/1"]["logged"] is False and "not a registered model version" in versions["fake/1"]["note"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["live_games"] == 2 and metrics["live_mean_rating"] == pytest.approx(11 / 3)
    assert metrics["live_mecha_mean_vote_margin"] == pytest.approx(1 / 6) and metrics["live_parse_failures"] == 3
    assert [m.step for m in client.get_metric_history(run_id, "live_games")] == [2]  # step: games so far
    assert [a.path for a in client.list_artifacts(run_id, "live")] == [PLOT_ARTIFACT]
    png = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PLOT_ARTIFACT, dst_path=str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unregistered_versions_are_not_logged(fresh_tracking: TrackingTarget) -> None:
    report = asyncio.run(_report_of_fakes())
    for label in ("fake/1", "/home/me/model", "runs:/abc/model", f"{MODEL}/7"):
        assert registered_run(fresh_tracking, label) is None
    assert log_live(fresh_tracking, report["fake/1"]) is None


async def _report_of_fakes() -> LiveReport:
    return live_report(await rated_games("fake/1", 1, 3, "up"), {})


def test_report_with_no_store_yet() -> None:
    result = runner.invoke(app, ["report", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["versions"] == {}
    assert "no games in" in result.stderr
    assert not (Settings().home / "cyoa.db").exists()  # a report creates no empty database


# --- promote --live -------------------------------------------------------------------------------
def test_promote_live(trained: TrainOutcome, fresh_tracking: TrackingTarget, dataset: DatasetVersion,
                      tmp_path: Path) -> None:
    """Two copies of one model, so the offline gate passes and the live figures decide."""
    champion = register_copy(trained.checkpoint, fresh_tracking, tmp_path / "one")
    challenger = register_copy(trained.checkpoint, fresh_tracking, tmp_path / "two")
    set_alias(fresh_tracking, MODEL, CHAMPION, champion)
    set_alias(fresh_tracking, MODEL, CHALLENGER, challenger)
    client = MlflowClient(fresh_tracking.uri)
    runs = {v: client.get_model_version(MODEL, v).run_id for v in (champion, challenger)}
    steps = dataset.splits["test"]
    options = EvalOptions(samples=2, batch_size=2)

    def attempt(challenger_games: list[Game]) -> tuple[bool, list[str]]:
        games = asyncio.run(rated_games(f"{MODEL}/{champion}", 4, 4, "up")) + challenger_games
        live = LiveCheck(live_report(games, {}), LiveRules(min_games=3))
        decision = promote(fresh_tracking, MODEL, steps, "test", "d1", options, None, live=live)
        assert decision.live is not None and decision.live["champion"] is not None
        assert decision.live["champion"]["mean_rating"] == 4.0
        return decision.promoted, decision.gate.reasons

    def champion_now() -> str:
        return str(client.get_model_version_by_alias(MODEL, CHAMPION).version)

    # Too few games: refused at once, without the offline evaluation; the figures used are logged.
    promoted, reasons = attempt(asyncio.run(rated_games(f"{MODEL}/{challenger}", 2, 5, "up")))
    assert not promoted and reasons == [f"live: not enough live games: {MODEL}/{challenger} wrote 2, the live gate "
                                        f"needs at least 3; play it (`cyoa play --new --model models:/{MODEL}/"
                                        f"{challenger}`) or promote without --live"]
    assert champion_now() == champion
    challenger_run = client.get_run(runs[challenger])
    assert challenger_run.data.metrics["live_games"] == 2 and "test_perplexity" not in challenger_run.data.metrics
    assert client.get_run(runs[champion]).data.metrics["live_mean_rating"] == 4.0
    assert client.get_model_version(MODEL, challenger).tags[LIVE_GATE_TAG].startswith("failed: live: not enough")

    # Rated worse beyond the tolerance: refused.
    promoted, reasons = attempt(asyncio.run(rated_games(f"{MODEL}/{challenger}", 3, 3, "up")))
    assert not promoted and reasons == ["live: mean rating 3.00 is more than 0.25 stars below the champion's 4.00 "
                                        "(limit 3.75)"]
    assert champion_now() == champion

    # Enough games, rated as well: both gates pass, and the challenger becomes the champion.
    promoted, reasons = attempt(asyncio.run(rated_games(f"{MODEL}/{challenger}", 3, 4, "up")))
    assert promoted and champion_now() == challenger
    assert reasons[-1] == "live: 3 games >= 3; mean rating 4.00 >= 3.75; thumbs-up share 1.00 >= 0.95"
    assert reasons[0].startswith("parse rate")
    assert "test_perplexity" in client.get_run(runs[challenger]).data.metrics
    assert client.get_model_version(MODEL, challenger).tags[LIVE_GATE_TAG].startswith("passed: live: 3 games")


def test_promote_live_cli_refuses_without_live_games(trained: TrainOutcome, dataset: DatasetVersion,
                                                      tmp_path: Path) -> None:
    settings = Settings()
    version = register_copy(trained.checkpoint, settings.tracking, tmp_path / "copy")
    set_alias(settings.tracking, MODEL, CHALLENGER, version)
    data = tmp_path / "steps.jsonl"
    data.write_text(steps_to_jsonl(dataset.splits["test"][:2]), encoding="utf-8")
    result = runner.invoke(app, ["promote", "--live", "--data", str(data), "--samples", "1"])
    assert result.exit_code == 1, result.output
    assert (f"not promoted: live: not enough live games: {MODEL}/1 wrote 0, the live gate needs at least 5"
            in " ".join(result.stdout.split()))
    aliases = MlflowClient(settings.tracking_uri).get_registered_model(MODEL).aliases
    assert {alias: str(number) for alias, number in aliases.items()} == {CHALLENGER: version}  # nothing promoted

    bad = runner.invoke(app, ["promote", "--live", "--min-games", "0", "--data", str(data)])
    assert bad.exit_code == 2 and "--min-games" in bad.output
