"""``cyoa web``'s wiring: safe defaults, and games resumed at start and stopped cleanly at shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from cyoa import wiring
from cyoa.cli import app as cli
from cyoa.service import Parts, run_service
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.queue import BatchingWriter
from engine.writers import Writers
from web.launcher import build_tables


def test_cyoa_web_binds_this_machine_only_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(wiring, "web_main", lambda host, port: calls.append((host, port)))
    assert CliRunner().invoke(cli, ["web"]).exit_code == 0
    assert CliRunner().invoke(cli, ["web", "--host", "0.0.0.0", "--port", "8080"]).exit_code == 0
    assert calls == [("127.0.0.1", 8000), ("0.0.0.0", 8080)]


@pytest.mark.asyncio
async def test_a_restart_resumes_web_games_and_their_votes_still_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SQLiteGameStore(tmp_path / "games.db") as store:
        writer = BatchingWriter(FakeWriter(), gather_seconds=0.0)
        before = build_tables(writer, store, premises=[])
        game = await before.start("room12345", "room12345", "web:ana", "fantasy", "A knight wakes.")
        await before.close()  # the process stops; the game is in the store

        seen: dict[str, Any] = {}

        async def serve_once(server: uvicorn.Server) -> None:  # instead of listening: one request, then stop
            transport = httpx.ASGITransport(app=server.config.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                seen["game"] = (await client.get("/api/games/room12345")).json()
                seen["vote"] = (await client.post("/api/games/room12345/vote", json={"choice": 2})).json()

        monkeypatch.setattr(uvicorn.Server, "serve", serve_once)
        after = build_tables(writer, store, premises=[])
        await run_service(Parts(Writers(writer), web=after, port=0))

        assert seen["game"]["scene"]["narration"] == game.current.scene.narration
        assert seen["vote"]["your_vote"] == 2 and seen["vote"]["votes"] == [0, 0, 1]
        assert after._closed and not after._timers  # shut down: no timer left running
        assert len((await store.load(game.id)).current.votes) == 1


def test_sigterm_stops_the_server_cleanly_and_the_game_survives(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_process.py")),
                                str(tmp_path / "games.db"), str(port)],
                               stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/api/genres", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        room = httpx.post(f"{base}/api/games", json={"premise": "A knight wakes."}, timeout=10).json()["room"]
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log
    assert "stopped; every game is saved" in log

    async def stored() -> list[str]:
        async with SQLiteGameStore(tmp_path / "games.db") as store:
            return [game.place for game in await store.unfinished()]

    assert asyncio.run(stored()) == [f"web:{room}:{room}"]
