"""Which model writes which game: champion, challenger share, versions kept by running games."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.errors import CyoaError, ModelLoadError
from engine.fakes import FakeWriter
from engine.ports import SceneWriter, WriteRequest, WrittenScene
from engine.prompt_format import StoryContext
from engine.queue import BatchingWriter
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


class ClosingWriter(FakeWriter):
    """A writer that records being closed (as a ``BatchingWriter`` stops its worker)."""

    def __init__(self, model_version: str) -> None:
        super().__init__(model_version=model_version)
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class GatedWriter(FakeWriter):
    """Writes only once ``gate`` is set: a model call in flight for as long as a test needs."""

    def __init__(self, model_version: str) -> None:
        super().__init__(model_version=model_version)
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        self.started.set()
        await self.gate.wait()
        return await super().write(requests)


def test_prune_unloads_and_closes_the_versions_nobody_uses_and_a_game_gets_its_own_back() -> None:
    loaded: list[ClosingWriter] = []

    async def loader(version: str) -> SceneWriter:
        loaded.append(ClosingWriter(version))
        return loaded[-1]

    async def scenario() -> None:
        writers = Writers(ClosingWriter("m/3"), loader=loader)
        writers.set_challenger(ClosingWriter("m/4"))
        old, older = await writers.for_version("m/2"), await writers.for_version("m/1")
        assert await writers.prune({"m/2"}) == ["m/1"]  # a running game of m/2 keeps it
        assert older is loaded[1] and loaded[1].closed and not loaded[0].closed
        assert sorted(writers.by_version) == ["m/2", "m/3", "m/4"]
        assert await writers.prune(set()) == ["m/2"] and loaded[0].closed
        assert await writers.prune(set()) == []  # champion and challenger stay, whatever runs
        assert sorted(writers.by_version) == ["m/3", "m/4"]
        again = await writers.for_version("m/1")  # a resumed game of a pruned version: loaded on demand
        assert again.model_version == "m/1" and again is not older and old is loaded[0]

    asyncio.run(scenario())
    assert [w.model_version for w in loaded] == ["m/2", "m/1", "m/1"]


def test_a_version_with_a_request_queued_or_in_flight_is_not_pruned_until_it_is_done() -> None:
    async def scenario() -> list[str]:
        model = GatedWriter("m/1")
        queued = BatchingWriter(model, gather_seconds=0.05)
        writers = Writers(FakeWriter(model_version="m/2"))
        writers.by_version["m/1"] = queued  # a game of m/1 has just ended
        request = WriteRequest(StoryContext("fantasy", "A knight wakes."))
        writing = asyncio.get_running_loop().create_task(queued.write([request]))
        await asyncio.sleep(0)
        assert await writers.prune(set()) == []  # queued, not yet sent to the model
        await model.started.wait()
        assert await writers.prune(set()) == []  # being written
        model.gate.set()
        [scene] = await asyncio.wait_for(writing, 5)  # the branch's caller gets its scene
        assert scene.model_version == "m/1"
        return await writers.prune(set())

    assert asyncio.run(scenario()) == ["m/1"]
