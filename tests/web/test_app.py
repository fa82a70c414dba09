"""The web frontend over the real session layer: Tables on a real SQLite store, the fake writer behind the
batching queue, driven over HTTP (httpx's ASGI transport), one client (one cookie) per player."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.game import Game
from engine.queue import BatchingWriter
from engine.tables import Tables
from web.app import create_app
from web.guard import COOKIE
from web.launcher import build_tables
from web.limits import Rate, RateLimits

pytestmark = pytest.mark.asyncio
XSS = "<script>alert(1)</script> wakes in a shrine"


@dataclass
class Site:
    app: FastAPI
    tables: Tables
    store: SQLiteGameStore

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 4000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    def game(self, room: str) -> Game:
        game = self.tables.game_at(self.tables.place(room, room))
        assert game is not None
        return game

    async def close_vote(self, room: str) -> None:
        """The vote's timer firing, now (as tests/engine/test_tables.py does)."""
        game = self.game(room)
        async with self.tables._lock(game):
            await self.tables._close(game)


async def make_site(tmp_path: Path, limits: RateLimits | None = None) -> AsyncIterator[Site]:
    async with SQLiteGameStore(tmp_path / "games.db") as store:
        writer = BatchingWriter(FakeWriter(), gather_seconds=0.0)
        tables = build_tables(writer, store, premises=[])
        try:
            yield Site(create_app(tables, limits=limits), tables, store)
        finally:
            await tables.close()
            await writer.close()


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async for made in make_site(tmp_path):
        yield made


async def start(client: httpx.AsyncClient, premise: str = "A knight wakes in a shrine.") -> dict[str, Any]:
    response = await client.post("/api/games", json={"genre": "fantasy", "premise": premise})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_two_players_vote_and_both_see_the_next_scene(site: Site) -> None:
    async with site.client() as ana, site.client() as ben:
        opened = await start(ana)
        room = opened["room"]
        assert opened["starter"] and len(opened["scene"]["choices"]) == 3 and opened["deadline"]
        assert ana.cookies.get(COOKIE) and ana.cookies.get(COOKIE) != (await ben.get("/api/genres")).cookies.get(COOKIE)

        seen = (await ben.get(f"/api/games/{room}")).json()
        assert seen["scene"] == opened["scene"] and not seen["starter"] and seen["your_vote"] is None

        assert (await ana.post(f"/api/games/{room}/vote", json={"choice": 1})).json()["your_vote"] == 1
        voted = (await ben.post(f"/api/games/{room}/vote", json={"choice": 1})).json()
        assert voted["votes"] == [0, 2, 0] and voted["your_vote"] == 1
        withdrawn = (await ben.delete(f"/api/games/{room}/vote")).json()
        assert withdrawn["votes"] == [0, 1, 0] and withdrawn["your_vote"] is None
        await ben.post(f"/api/games/{room}/vote", json={"choice": 1})

        await site.close_vote(room)
        for client in (ana, ben):
            after = (await client.get(f"/api/games/{room}")).json()
            assert after["scene"]["index"] == 1 and after["votes"] == [0, 0, 0] and after["your_vote"] is None
            assert opened["scene"]["choices"][1].lower() in after["scene"]["narration"].lower()
        history = (await ben.get(f"/api/games/{room}/history")).json()
        assert [scene["chosen"] for scene in history] == [1, None]

    saved = await site.store.load(site.game(room).id)
    assert len(saved.path) == 2 and len(saved.path[0].votes) == 2
    assert all(vote.player.startswith("web:") for vote in saved.path[0].votes)
    token = ana.cookies.get(COOKIE)
    assert token and token not in saved.to_json()  # the store sees a pseudonym, never the token


async def test_a_vote_on_no_choice_is_refused(site: Site) -> None:
    async with site.client() as ana:
        room = (await start(ana))["room"]
        response = await ana.post(f"/api/games/{room}/vote", json={"choice": 7})
        assert response.status_code == 409 and "not a choice" in response.json()["error"]


async def test_the_event_stream_delivers_the_next_scene(site: Site) -> None:
    async with site.client() as ana:
        room = (await start(ana))["room"]
        await ana.post(f"/api/games/{room}/vote", json={"choice": 0})
    chunks: list[bytes] = []
    arrived = asyncio.Event()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            arrived.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": f"/api/games/{room}/events", "raw_path": b"",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"test")],
             "client": ("127.0.0.1", 4000), "server": ("test", 80)}
    streaming = asyncio.create_task(site.app(scope, receive, send))  # type: ignore[arg-type]
    await asyncio.wait_for(arrived.wait(), 5)  # subscribed: the stream has begun
    assert site.tables.presenter.watchers(site.game(room).place) == 1  # type: ignore[attr-defined]

    await site.close_vote(room)
    for _ in range(100):
        if b"event: scene" in b"".join(chunks):
            break
        await asyncio.sleep(0.02)
    text = b"".join(chunks).decode()
    assert "event: scene" in text and '"index": 1' in text and "take path 1-a" in text.lower()

    gone.set()
    await asyncio.wait_for(streaming, 5)
    assert site.tables.presenter.watchers(site.game(room).place) == 0  # type: ignore[attr-defined]


async def test_only_the_starter_steers(site: Site) -> None:
    async with site.client() as ana, site.client() as ben:
        room = (await start(ana))["room"]
        for what in ("retry", "undo", "end"):
            response = await ben.post(f"/api/games/{room}/{what}")
            assert response.status_code == 403, (what, response.text)
            assert response.json()["error"]  # Tables' own reason (its wording is the engine's)
        retried = await ana.post(f"/api/games/{room}/retry")
        assert retried.status_code == 200 and retried.json()["scene"]["index"] == 0
        again = await ana.post(f"/api/games/{room}/end")
        assert again.status_code == 200 and again.json()["ended"]
        assert (await ben.post(f"/api/games/{room}/vote", json={"choice": 0})).status_code == 409
        # The engine's refusal carries a hint; the web renders it its own way (no slash command named).
        over = await ana.post(f"/api/games/{room}/retry")
        assert over.status_code == 409 and over.json() == {"error": "no adventure is running here",
                                                           "hint": "start a new adventure at /"}


async def test_an_unknown_room_is_a_404_as_json_and_as_a_page(site: Site) -> None:
    async with site.client() as ana:
        response = await ana.get("/api/games/nosuchroom123")
        assert response.status_code == 404 and "no game in room 'nosuchroom123'" in response.json()["error"]
        page = await ana.get("/g/<b>nosuchroom")
        assert page.status_code == 404 and "No such adventure" in page.text
        assert "&lt;b&gt;nosuchroom" in page.text and "<b>" not in page.text
        stray = await ana.get("/no/such/page")
        assert stray.status_code == 404 and "text/html" in stray.headers["content-type"]


async def test_a_script_premise_comes_back_as_data_and_the_page_sets_text_only(site: Site) -> None:
    async with site.client() as ana:
        room = (await start(ana, premise=XSS))["room"]
        assert (await ana.get(f"/api/games/{room}")).json()["premise"] == XSS
        page = await ana.get(f"/g/{room}")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert XSS not in page.text  # the page is static: the game's texts arrive as JSON
        for name in ("game.js", "home.js"):
            script = (await ana.get(f"/static/{name}")).text
            assert "textContent" in script
            assert "innerHTML" not in script and "outerHTML" not in script and "insertAdjacentHTML" not in script


async def test_bodies_are_bounded_with_a_clear_message(site: Site) -> None:
    async with site.client() as ana:
        response = await ana.post("/api/games", json={"premise": "x" * 301})
        assert response.status_code == 422
        assert response.json()["error"].startswith("the request is not valid: premise:")
        assert "300" in response.json()["error"]
        huge = await ana.post("/api/games", content=b"{" + b" " * 20_000 + b"}",
                              headers={"content-type": "application/json"})
        assert huge.status_code == 413


async def test_rate_limits_answer_429(tmp_path: Path) -> None:
    limits = RateLimits(per_player=Rate(burst=3, per_second=0.001), per_address=Rate(burst=5, per_second=0.001))
    async for site in make_site(tmp_path, limits):
        async with site.client() as ana, site.client() as ben, site.client("10.0.0.9") as cy:
            codes = [(await ana.get("/api/genres")).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            limited = await ana.get("/api/genres")
            assert limited.status_code == 429 and "too many requests" in limited.json()["error"]
            # the same address, another player: the address's bucket is nearly spent too
            assert (await ben.get("/api/genres")).status_code == 429
            assert (await cy.get("/api/genres")).status_code == 200  # another address and player


async def test_ratings_and_feedback_reach_the_store(site: Site) -> None:
    async with site.client() as ana:
        room = (await start(ana))["room"]
        starred = (await ana.post(f"/api/games/{room}/rate", json={"mark": "star"})).json()
        assert starred["changed"] and starred["game"]["your_marks"]["star"]
        thumbed = (await ana.post(f"/api/games/{room}/rate", json={"mark": "down"})).json()
        assert thumbed["game"]["your_marks"] == {"star": True, "thumb": "down"}
        sent = await ana.post(f"/api/games/{room}/feedback", json={"text": "The shrine felt alive."})
        assert sent.status_code == 201
        too_long = await ana.post(f"/api/games/{room}/feedback", json={"text": "y" * 1001})
        assert too_long.status_code == 422
        assert (await ana.post(f"/api/games/{room}/rate", json={"mark": "meh"})).status_code == 422

    saved = await site.store.load(site.game(room).id)
    assert {(r.stars, r.thumb) for r in saved.ratings if r.stars or r.thumb} == {(5, None), (None, "down")}
    assert [r.comment for r in saved.ratings if r.comment] == ["The shrine felt alive."]


async def test_a_second_comment_at_once_is_a_cooldown_429(site: Site) -> None:
    async with site.client() as ana:
        room = (await start(ana))["room"]
        assert (await ana.post(f"/api/games/{room}/feedback", json={"text": "Lovely."})).status_code == 201
        again = await ana.post(f"/api/games/{room}/feedback", json={"text": "Lovely again."})
        assert again.status_code == 429


async def test_genres_pages_and_schema(site: Site) -> None:
    async with site.client() as ana:
        first = await ana.get("/api/genres")
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        genres = first.json()
        assert {"id": "fantasy", "name": "Fantasy", "blurb": "Kingdoms, guilds, dragons and spirits."} in genres
        home = await ana.get("/")
        assert home.status_code == 200 and 'id="genre"' in home.text
        assert "set-cookie" not in home.headers  # the session cookie was set once, on the first request
        schema = (await ana.get("/openapi.json")).json()
        assert {"/api/games", "/api/games/{room}/vote", "/api/games/{room}/events"} <= set(schema["paths"])
        explorer = await ana.get("/docs")
        assert explorer.status_code == 200 and "content-security-policy" not in explorer.headers
        unknown = await ana.post("/api/games", json={"genre": "opera"})
        assert unknown.status_code == 409 and "unknown genre" in unknown.json()["error"]


async def test_a_bug_is_a_500_with_an_error_id_that_is_logged(site: Site, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    async with site.client() as ana:
        room = (await start(ana))["room"]
    monkeypatch.setattr(site.tables, "feedback", broken)
    transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(f"/api/games/{room}/feedback", json={"text": "Hello."})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.startswith("something went wrong on the server (error id ") and "a bug" not in error
    error_id = error.rsplit(" ", 1)[1].rstrip(")")
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)


async def test_nicknames_are_stored_shown_to_the_room_and_checked(tmp_path: Path) -> None:
    async for site in make_site(tmp_path):
        async with site.client() as ana, site.client() as ben:
            room = (await start(ana))["room"]
            assert (await ana.post("/api/me", json={"nickname": "Aiko"})).json()["nickname"] == "Aiko"
            assert (await ben.post("/api/me", json={"nickname": "  Ren   the\tBold "})).json()["nickname"] == "Ren the Bold"
            refused = await ben.post("/api/me", json={"nickname": "Ren <|scene|>"})
            assert refused.status_code == 400 and "markup" in refused.json()["error"]
            assert (await ben.post("/api/me", json={"nickname": "x" * 33})).status_code == 422
            before = (await ben.get(f"/api/games/{room}")).json()
            assert before["names"] == ["Aiko"] and before["players"] == 1 and before["nickname"] == "Ren the Bold"
            await ben.post(f"/api/games/{room}/vote", json={"choice": 0})
            seen = (await ana.get(f"/api/games/{room}")).json()
            assert seen["names"] == ["Aiko", "Ren the Bold"] and seen["players"] == 2 and seen["nickname"] == "Aiko"
            token = ana.cookies.get(COOKIE)
    # A restart: a new app over the same database file knows the nickname by the same cookie.
    async for site in make_site(tmp_path):
        async with site.client() as ana:
            ana.cookies.set(COOKIE, token or "")
            assert (await ana.get("/api/me")).json() == {"nickname": "Aiko", "opted_out": False}
            assert (await ana.post("/api/me", json={"nickname": " "})).json()["nickname"] is None
            assert await site.store.nicknames([f"web:{i}" for i in range(600)]) == {}  # more than one statement


async def test_a_web_player_opts_out_and_deletes_what_they_did(site: Site) -> None:
    async with site.client() as ana, site.client() as ben:
        room = (await start(ana))["room"]
        await ben.post("/api/me", json={"nickname": "Ren"})
        await ben.post(f"/api/games/{room}/vote", json={"choice": 2})
        await ben.post(f"/api/games/{room}/rate", json={"mark": "star"})
        assert (await ben.post("/api/me", json={"opted_out": True})).json() == {"nickname": "Ren", "opted_out": True}
        ben_id = site.game(room).players[-1]
        assert ben_id in await site.store.opted_out()
        gone = (await ben.delete("/api/me")).json()["forgotten"]
        assert gone == {"games": 0, "votes": 1, "ratings": 1, "comments": 0}
        seen = (await ana.get(f"/api/games/{room}")).json()
        assert seen["votes"] == [0, 0, 0] and "Ren" not in seen["names"]
        assert await site.store.nicknames([ben_id]) == {}
        assert (await ben.get("/api/me")).json() == {"nickname": None, "opted_out": True}


async def test_one_address_runs_a_bounded_number_of_games(tmp_path: Path) -> None:
    async for site in make_site(tmp_path, RateLimits(games_per_address=2)):
        rooms = []
        for _ in range(2):  # fresh cookies each time: the bound is the address's, not a player's
            async with site.client("10.0.0.1") as visitor:
                rooms.append((await start(visitor))["room"])
        async with site.client("10.0.0.1") as visitor:
            refused = await visitor.post("/api/games", json={"genre": "fantasy"})
            assert refused.status_code == 429 and "2 adventures started from your address" in refused.json()["error"]
        async with site.client("10.0.0.2") as neighbour:
            await start(neighbour)  # another address is not held back
        game = site.game(rooms[0])
        await site.tables.end(game.place, game.owner or "")
        async with site.client("10.0.0.1") as visitor:
            await start(visitor)  # one of its games ended: there is room again
