"""``/health`` and ``/metrics`` over the real session layer, and the web answering within its time while the
model is slow (a start answers "writing"; the opening reaches the page by its event stream)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.ports import WriteRequest, WrittenScene
from engine.queue import BatchingWriter
from engine.writers import Writers
from web.app import create_app
from web.launcher import build_tables
from web.service import FROZEN_SECONDS, STARTUP_GRACE_SECONDS, Service

pytestmark = pytest.mark.asyncio


class HeldWriter(FakeWriter):
    """The fake writer, but each call waits until the test lets it go (a slow model)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.fail = False

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        await self.go.wait()
        if self.fail:
            raise RuntimeError("the model crashed")
        return await super().write(requests)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_games_votes_and_scenes_and_name_the_model(tmp_path: Path) -> None:
    async with SQLiteGameStore(tmp_path / "games.db") as store:
        queue = BatchingWriter(FakeWriter(), gather_seconds=0.0)
        writers = Writers(queue)
        tables = build_tables(writers, store, premises=[])
        service = Service(writers, tables={"web": tables})
        app = create_app(tables, service=service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            room = (await client.post("/api/games", json={"premise": "A knight wakes."})).json()["room"]
            assert (await client.post(f"/api/games/{room}/vote", json={"choice": 1})).status_code == 200
            response = await client.get("/metrics")
            health = await client.get("/health")
        await tables.close()
        await queue.close()
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("cyoa_games_running", (("frontend", "web"),))] == 1
    assert found[("cyoa_votes_total", (("frontend", "web"),))] == 1
    assert found[("cyoa_scenes_written_total", (("version", "fake/1"),))] >= 1  # the opening, and branches
    assert found[("cyoa_write_seconds_count", (("version", "fake/1"),))] >= 1
    assert ("cyoa_queue_depth", (("version", "fake/1"),)) in found
    assert found[("cyoa_model_in_service", (("role", "champion"), ("version", "fake/1")))] == 1
    assert health.status_code == 200
    assert health.json() | {"queue": 0} == {"status": "ok", "problems": [], "storyteller": "fake/1",
                                             "challenger": None, "games": {"web": 1}, "queue": 0, "bot": None}


async def test_health_fails_for_a_game_frozen_too_long_and_a_bot_that_lost_discord(tmp_path: Path) -> None:
    now = [0.0]
    async with SQLiteGameStore(tmp_path / "games.db") as store:
        queue = BatchingWriter(FakeWriter(), gather_seconds=0.0)
        tables = build_tables(queue, store, premises=[])
        connected = [False]
        service = Service(Writers(queue), tables={"web": tables}, bot_ready=lambda: connected[0],
                          clock=lambda: now[0])
        game = await tables.start("room12345", "room12345", "web:ana", "fantasy", "A knight wakes.")
        assert service.health()[0]  # a bot still connecting is not a fault
        tables._timers.pop(game.id).cancel()  # a bug: the vote has no timer, nothing will move the game on
        assert service.health()[0]  # seen once: a vote closing passes through this state
        now[0] = FROZEN_SECONDS + 1
        healthy, body = service.health()
        assert not healthy and body["problems"] == [f"1 game(s) frozen for 30 s or more: {game.id}"]
        now[0] = STARTUP_GRACE_SECONDS + 1
        connected[0] = True
        await tables.end(game.place, "web:ana")
        assert service.health()[0]  # ended: no longer frozen
        connected[0] = False
        assert service.health()[1]["problems"] == ["the bot is not connected to Discord"]
        await tables.close()
        await queue.close()


async def test_a_slow_start_answers_at_once_and_the_opening_follows(tmp_path: Path) -> None:
    async with SQLiteGameStore(tmp_path / "games.db") as store:
        model = HeldWriter()
        queue = BatchingWriter(model, gather_seconds=0.0)
        tables = build_tables(queue, store, premises=[])
        app = create_app(tables, respond_within=0.05)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            refused = await client.post("/api/games", json={"genre": "no-such-genre"})
            assert refused.status_code == 409 and "genre" in refused.json()["error"]  # refused at once
            answer = await client.post("/api/games", json={"premise": "A knight wakes."})
            assert answer.status_code == 202 and answer.json()["writing"] is True
            room = answer.json()["room"]
            assert (await client.get(f"/api/games/{room}")).json() == {"room": room, "writing": True}
            assert (await client.get(f"/g/{room}")).status_code == 200  # the page opens and waits
            events = tables.presenter.subscribe(tables.place(room, room))  # type: ignore[attr-defined]
            model.go.set()
            event = await asyncio.wait_for(events.get(), 5)
            while event.kind != "scene":
                event = await asyncio.wait_for(events.get(), 5)
            game = (await client.get(f"/api/games/{room}")).json()
            assert game["scene"]["narration"] == event.data["narration"] and game["starter"] is True

        model.go.clear()
        model.fail = True
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            room = (await client.post("/api/games", json={"premise": "A pilot wakes."})).json()["room"]
            events = tables.presenter.subscribe(tables.place(room, room))  # type: ignore[attr-defined]
            model.go.set()
            failed = await asyncio.wait_for(events.get(), 5)
            while failed.kind == "draft":  # the draft taken back
                failed = await asyncio.wait_for(events.get(), 5)
            assert failed.kind == "failed" and "storyteller" in failed.data["reason"]
            first = await client.get(f"/api/games/{room}")
            assert first.status_code == 503 and "storyteller" in first.json()["error"]
            assert (await client.get(f"/api/games/{room}")).status_code == 404  # told once; then no such game
        await tables.close()
        await queue.close()
