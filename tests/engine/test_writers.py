"""Which model writes which game: champion, challenger share, versions kept by running games."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import CyoaError, ModelLoadError
from engine.fakes import FakeWriter
from engine.ports import SceneWriter
from engine.turns import StoryEngine
from engine.writers import Writers


def test_the_challenger_writes_its_share_of_new_games() -> None:
    writers = Writers(FakeWriter(model_version="m/1"), challenger_share=0.25, seed=7)
    assert {writers.for_new_game().model_version for _ in range(50)} == {"m/1"}  # no challenger yet
    writers.set_challenger(FakeWriter(model_version="m/2"))
    drawn = [writers.for_new_game().model_version for _ in range(4000)]
    assert 0.22 < drawn.count("m/2") / len(drawn) < 0.28


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(CyoaError, match="between 0 and 1"):
        Writers(FakeWriter(), challenger_share=1.5)


def test_promoting_the_challenger_makes_it_the_champion_and_clears_the_challenger() -> None:
    writers = Writers(FakeWriter(model_version="m/1"), challenger_share=1.0)
    writers.set_challenger(FakeWriter(model_version="m/2"))
    writers.set_champion(writers.by_version["m/2"])
    assert (writers.champion, writers.challenger) == ("m/2", None)
    assert writers.for_new_game().model_version == "m/2"


def test_a_running_game_keeps_its_version_after_the_champion_moves() -> None:
    async def scenario() -> tuple[str, str, str]:
        writers = Writers(FakeWriter(model_version="m/1"))
        engine = StoryEngine(writers)
        old = await engine.start("a", "fantasy", "A knight wakes.")
        writers.set_champion(FakeWriter(model_version="m/2"))
        new = await engine.start("b", "fantasy", "A knight wakes.")
        await engine.choose(old, 0)
        return old.model_version, old.current.scene.model_version, new.model_version

    assert asyncio.run(scenario()) == ("m/1", "m/1", "m/2")


def test_a_resumed_games_version_is_loaded_once_or_falls_back_to_the_champion() -> None:
    loads: list[str] = []

    async def loader(version: str) -> SceneWriter:
        loads.append(version)
        if version == "m/gone":
            raise ModelLoadError("its artifacts were deleted")
        return FakeWriter(model_version=version)

    async def scenario() -> list[str]:
        writers = Writers(FakeWriter(model_version="m/3"), loader=loader)
        got = await asyncio.gather(writers.for_version("m/1"), writers.for_version("m/1"))
        fallback = await writers.for_version("m/gone")
        return [w.model_version for w in got] + [fallback.model_version]

    assert asyncio.run(scenario()) == ["m/1", "m/1", "m/3"]
    assert loads == ["m/1", "m/gone"]  # loaded once, though asked twice at once
