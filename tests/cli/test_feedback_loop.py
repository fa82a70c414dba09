"""The whole loop, for real: games played through the bot (simcord) with votes and ratings, written by a tiny
model trained here (from scratch, or a LoRA adapter over a local Llama checkpoint, SmolLM2's family) → `cyoa feedback export` → a new dataset version with its lineage in a real MLflow store →
`cyoa train` fine-tunes the champion on it → a new challenger → `cyoa promote` → the running bot writes the
next new game with the new version, without a restart, while the game in progress keeps the old one."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import simcord
from mlflow import MlflowClient
from typer.testing import CliRunner

from bot.launcher import build_bot
from bot.render import MARKS, NUMBERS
from cyoa.cli import app
from cyoa.settings import Settings
from data.store import SQLiteGameStore
from engine.queue import BatchingWriter
from engine.writers import Writers
from models.examples import examples_from_steps
from models.reload import ChampionWatcher
from models.training import TrainingRun, TrainState, new_storyteller
from models.writer import ModelWriter
from tests.bot.conftest import PREMISES
from tests.models.conftest import small_dataset, tiny
from tests.models.test_base_models import save_checkpoint

runner = CliRunner()
UP = next(emoji for emoji, mark in MARKS.items() if mark == "up")
MODEL = "cyoa-storyteller"


async def cyoa(*args: str) -> dict[str, Any]:
    """Run a `cyoa` command on a worker thread (commands run their own event loops) and read its JSON."""
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def scenes(channel: simcord.ChannelHandle) -> list[Any]:
    return sorted((m for m in channel.history() if m.embeds and " · scene " in (m.embeds[0].title or "")),
                  key=lambda m: m.id)


def pretrained_llama(stories: Path, tmp_path: Path) -> Path:
    """A small Llama checkpoint that already writes like the stories (as SmolLM2 writes English): trained fully
    here, outside the registry, then saved as a plain Hugging Face folder, its tokenizer with the markers."""
    texts = [scene["text"] for path in stories.glob("*.json") for scene in json.loads(path.read_text())["scenes"]]
    random_init = save_checkpoint(tmp_path / "llama-random", "llama", texts)
    # The training loop alone (no MLflow): this is the "pretraining" of a base, not a version of ours.
    dataset = small_dataset(tmp_path / "pretraining-data")
    config = tiny(base_model=str(random_init), architecture=None, max_epochs=2, learning_rate=3e-3)
    job = TrainingRun(new_storyteller(config, [], dataset.digest), examples_from_steps(dataset.splits["train"]),
                      examples_from_steps(dataset.splits["validation"]), tmp_path / "pretraining",
                      TrainState(run_id="pretraining"), log=lambda metrics, step: None)
    job.run()
    base = tmp_path / "llama-base"
    shutil.copytree(job.best_dir / "model", base)
    for path in (job.best_dir / "tokenizer").iterdir():
        shutil.copy(path, base)
    return base


async def first_champion(start: str, stories: Path, tmp_path: Path) -> None:
    if start == "scratch":
        bootstrap = await asyncio.to_thread(runner.invoke, app, ["bootstrap", "--preset", "tiny"])
        assert bootstrap.exit_code == 0, bootstrap.output
        return
    base = await asyncio.to_thread(pretrained_llama, stories, tmp_path)
    trained = await cyoa("train", "--base-model", str(base), "--preset", "tiny", "--lora-rank", "8",
                         "--max-epochs", "1", "--learning-rate", "0.003")
    assert trained["model"] == f"{MODEL}/1"
    assert (await cyoa("promote", "--samples", "4"))["promoted"] is True


@pytest.mark.asyncio
@pytest.mark.parametrize("start", ["scratch", "lora"])
async def test_play_harvest_retrain_promote_and_the_bot_picks_up_the_new_champion(
        start: str, few_stories: Path, tmp_path: Path) -> None:
    await first_champion(start, few_stories, tmp_path)
    settings = Settings()
    unbatched = 0.0  # simcord's virtual clock and a real-time gathering window do not mix

    async def load(version: str) -> BatchingWriter:
        return BatchingWriter(await ModelWriter.load(settings.tracking, f"models:/{version}"), gather_seconds=unbatched)

    async with SQLiteGameStore(settings.home / "cyoa.db") as store:
        writers = Writers(await load(f"{MODEL}/1"), loader=load)
        watcher = ChampionWatcher(writers, settings.tracking, MODEL, interval_seconds=settings.reload_seconds,
                                  wrap=lambda w: BatchingWriter(w, gather_seconds=unbatched))
        bot = build_bot(writers, store, PREMISES, watcher=watcher)
        # Room for real model calls, yet below the 60 s vote window: simcord treats a timer as parked (waiting
        # for virtual time) only when its real-time fallback lies beyond the settling deadline.
        async with simcord.run(bot, settle_timeout=30) as env:
            # simcord's clock, which stamps votes and ratings, starts on 1 January 2026; the engine stamps when a
            # scene was shown with the machine's. The harvest ties a rating to the version shown when it was
            # given, so the two must agree, as they do live (both the real time): start simcord's at now.
            env.backend.clock._epoch = datetime.now(UTC) - timedelta(seconds=env.backend.clock.elapsed)
            guild = env.create_guild()
            first, second = guild.create_text_channel("first"), guild.create_text_channel("second")
            alice, bob, carol = (guild.add_member(env.create_user(name)) for name in ("alice", "bob", "carol"))

            # Play: a game of two votes (no ending is allowed before scene 4, so it is still running), with
            # thumbs up from two players on what the table liked (the harvest needs two supporters a scene).
            await alice.slash(first, "adventure start", genre="fantasy")
            for turn in range(2):
                scene = scenes(first)[-1]
                await alice.react(scene, NUMBERS[turn % 2])
                await bob.react(scene, NUMBERS[turn % 2])
                await bob.react(scene, UP)
                await carol.react(scene, UP)
                await env.advance_time(61)
            [game] = await store.unfinished()
            assert game.model_version == f"{MODEL}/1" and len(game.path) == 3
            assert sum(shown.chosen is not None for shown in game.path) == 2 and len(game.ratings) == 4

            # Harvest into a new dataset version, with its lineage in MLflow. A tiny model trained for seconds
            # writes no English, which the text checks would drop (tests/data/test_feedback.py tests them):
            # here the loop's machinery is under test.
            exported = await cyoa("feedback", "export", "--no-text-checks")
            digest, parent = exported["digest"], exported["parent"]
            assert exported["created"] and digest != parent and exported["counts"]["steps_kept"] >= 1
            client = MlflowClient(settings.tracking_uri)
            [run] = client.search_runs(client.get_experiment_by_name("cyoa-data").experiment_id,
                                       f"tags.`cyoa.dataset_digest` = '{digest}'")
            assert run.data.tags["cyoa.parent_digest"] == parent
            again = await cyoa("feedback", "export", "--no-text-checks")
            assert (again["digest"], again["created"]) == (digest, False)  # no new play, no new version

            # Retrain: the champion fine-tuned on the harvest becomes the challenger, then the champion.
            trained = await cyoa("train", "--dataset", digest, "--max-epochs", "1")
            assert trained["model"] == f"{MODEL}/2" and trained["parent_model"] == f"{MODEL}/1"
            assert trained["dataset"] == digest
            if start == "lora":  # the champion's adapter trained further, over the same pinned base
                from models.registry import load_storyteller

                parent_card = load_storyteller(settings.tracking, f"models:/{MODEL}/1").card
                child_card = load_storyteller(settings.tracking, f"models:/{MODEL}/2").card
                assert parent_card.base is not None and child_card.base == parent_card.base
                assert child_card.config.lora_rank == 8
            promoted = await cyoa("promote", "--samples", "4")
            assert promoted["promoted"] is True

            # The running bot: at its next look at the registry the new champion writes new games...
            await env.advance_time(settings.reload_seconds + 1)
            assert writers.champion == f"{MODEL}/2"
            await bob.slash(second, "adventure start", genre="mecha")
            newer = next(g for g in bot.tables.games.values() if g.genre == "mecha")
            assert newer.model_version == f"{MODEL}/2" and newer.current.scene.model_version == f"{MODEL}/2"
            # ...and the game in progress keeps the version it began with.
            await alice.react(scenes(first)[-1], NUMBERS[0])
            await env.advance_time(61)
            older = await store.load(game.id)
            # 4 scenes, or 5 when retraining took longer in real time than the open vote's stored deadline (the
            # deadlines are wall-clock; simcord's clock is virtual): either way every scene is still v1's.
            assert len(older.path) in (4, 5)
            assert {shown.scene.model_version for shown in older.path} == {f"{MODEL}/1"}
            if not older.ended:
                await alice.slash(first, "adventure end")
            await bob.slash(second, "adventure end")
        await bot.close()

    # The live figures per version reach the runs that registered them.
    versions = (await cyoa("report"))["versions"]
    assert versions[f"{MODEL}/1"]["metrics"]["games"] == 1 and versions[f"{MODEL}/2"]["metrics"]["games"] == 1
    assert versions[f"{MODEL}/1"]["metrics"]["thumbs_up"] == 4 and versions[f"{MODEL}/1"]["logged"]
