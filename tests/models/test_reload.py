"""Hot reload against a real registry: a moved champion alias reaches new games, running games keep their
version, and a version that fails to load leaves the old one in service."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from mlflow import MlflowClient

from data.tracking import TrackingTarget
from data.versioning import DatasetVersion
from engine.turns import StoryEngine
from engine.writers import Writers
from models.registry import set_alias
from models.reload import ChampionWatcher
from models.train_job import train_model
from models.writer import ModelWriter
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
