"""Hot reload against a real registry: a moved champion alias reaches new games, running games keep their
version, a version that fails to load leaves the old one in service, and versions nobody uses are unloaded."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bot.launcher import build_bot
from cyoa.service import Parts
from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.errors import TrackingError
from engine.fakes import FakeWriter, MemoryStore
from engine.game import GameStatus
from engine.turns import StoryEngine
from engine.writers import Writers
from models.registry import set_alias
from models.reload import ChampionWatcher
from models.train_job import train_model
from models.writer import ModelWriter
from tests.engine.test_writers import ClosingWriter
from tests.models.conftest import MODEL, tiny


def test_the_watcher_brings_a_moved_champion_into_service(fresh_tracking: TrackingTarget, dataset: DatasetVersion,
                                                          tmp_path: Path) -> None:
    tracking = fresh_tracking
    for _ in range(3):
        train_model(tiny(max_epochs=1), dataset, tracking, tmp_path, MODEL)
    set_alias(tracking, MODEL, "champion", "1")
    # Version 3's files are lost: loading it must fail without taking the bot down.
    source = MlflowClient(tracking.uri).get_model_version(MODEL, "3").source
    assert tracking.artifact_root is not None
    [lost] = [p for p in Path(tracking.artifact_root).rglob(source.rsplit("/", 1)[-1]) if p.is_dir()]
    shutil.rmtree(lost)

    async def scenario() -> None:
        writers = Writers(await ModelWriter.load(tracking, f"models:/{MODEL}@champion"))
        engine = StoryEngine(writers)
        watcher = ChampionWatcher(writers, tracking, MODEL)
        running = await engine.start("a", "fantasy", "A knight wakes in a glass forest.")
        assert running.model_version == f"{MODEL}/1"
        # Training made version 3 the challenger; its files are gone, so it is reported and left out.
        assert await watcher.check() == []
        assert writers.challenger is None and list(watcher.failed) == [f"{MODEL}/3"]

        set_alias(tracking, MODEL, "champion", "2")
        assert "champion: cyoa-storyteller/2" in await watcher.check()
        new = await engine.start("b", "fantasy", "A knight wakes in a glass forest.")
        assert new.model_version == f"{MODEL}/2"
        await engine.choose(running, 0)
        assert running.current.scene.model_version == f"{MODEL}/1"  # a game keeps the version it began with

        set_alias(tracking, MODEL, "champion", "3")
        assert not any(c.startswith("champion") for c in await watcher.check())
        assert writers.champion == f"{MODEL}/2" and f"{MODEL}/3" in watcher.failed
        assert (await engine.start("c", "fantasy", "A knight wakes.")).model_version == f"{MODEL}/2"
        assert await watcher.check() == []  # the broken version is not tried again at every poll

    asyncio.run(scenario())


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_watcher_unloads_what_no_running_game_uses_after_each_poll(fresh_tracking: TrackingTarget,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    running = {f"{MODEL}/2"}  # the versions of the games in progress, as the bot's tables would say

    async def scenario() -> None:
        older, old = ClosingWriter(f"{MODEL}/1"), ClosingWriter(f"{MODEL}/2")
        writers = Writers(FakeWriter(model_version=f"{MODEL}/3"))
        writers.by_version.update({older.model_version: older, old.model_version: old})
        # Without knowing what runs, nothing is unloaded.
        assert await ChampionWatcher(writers, fresh_tracking, MODEL).prune() == []
        watcher = ChampionWatcher(writers, fresh_tracking, MODEL, interval_seconds=0.01, in_use=lambda: running)

        async def registry_down() -> list[str]:
            raise TrackingError("the tracking server is down")

        monkeypatch.setattr(watcher, "check", registry_down)  # unloading goes on without the registry
        polling = asyncio.get_running_loop().create_task(watcher.run())
        try:
            await _until(lambda: older.closed)
            assert sorted(writers.by_version) == [f"{MODEL}/2", f"{MODEL}/3"] and not old.closed
            running.clear()  # that game ended
            await _until(lambda: old.closed)
            assert list(writers.by_version) == [f"{MODEL}/3"]
        finally:
            polling.cancel()

    asyncio.run(scenario())


def test_the_service_tells_the_watcher_the_versions_of_its_running_games() -> None:
    async def scenario() -> set[str]:
        champion = FakeWriter(model_version=f"{MODEL}/3")
        bot = build_bot(champion, MemoryStore(), [], sync_commands=False)
        watcher = ChampionWatcher(Writers(champion), TrackingTarget("sqlite:///unused.db"), MODEL)
        Parts(Writers(champion), bot=bot, watcher=watcher)
        engine = StoryEngine(FakeWriter(model_version=f"{MODEL}/1"))
        running = await engine.start("discord:1:10", "fantasy", "A knight wakes.")
        ended = await engine.start("discord:1:11", "fantasy", "A knight wakes.")
        ended.status, ended.model_version = GameStatus.ENDED, f"{MODEL}/2"
        bot.tables.games.update({running.place: running, ended.place: ended})
        assert watcher.in_use is not None
        return set(watcher.in_use())

    assert asyncio.run(scenario()) == {f"{MODEL}/1"}
