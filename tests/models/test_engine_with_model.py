"""The engine's rules with the real tiny model behind the writer port (the fake writer covers the details)."""

from __future__ import annotations

import asyncio

from data.tracking import TrackingTarget
from engine.game import Game, GameStatus
from engine.turns import EngineRules, StoryEngine
from models.train_job import TrainOutcome
from models.writer import ModelWriter
from tests.models.conftest import MODEL


def test_a_game_with_the_real_model(trained: TrainOutcome, tracking: TrackingTarget) -> None:
    async def scenario() -> tuple[Game, StoryEngine]:
        writer = await ModelWriter.load(tracking, f"models:/{MODEL}@challenger")
        engine = StoryEngine(writer, EngineRules(max_scenes=4))
        game = await engine.start("terminal", "mecha", "A rookie pilot defends a drowned city.", ["ana"])
        while game.status == GameStatus.WAITING:
            await engine.start_pregeneration(game)
            game = await engine.choose(game, 0)
            if len(game.path) == 2:
                await engine.retry(game)
                await engine.undo(game)
                game = await engine.choose(game, 1)
        return game, engine

    game, engine = asyncio.run(scenario())
    assert game.status == GameStatus.ENDED and len(game.path) <= 4
    assert game.model_version == f"{MODEL}/1"
    assert all(shown.scene.model_version == f"{MODEL}/1" for shown in game.path)
    assert game.path[-1].scene.is_ending
    # Every scene was checked; whatever failed the checks is counted, and a repaired scene is marked.
    counts = engine.stats.as_dict()[f"{MODEL}/1"]
    assert counts["outputs"] >= len(game.path)
    assert Game.from_json(game.to_json()) == game
