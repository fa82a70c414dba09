"""``cyoa serve``: one process runs the real discord.py bot (against the fake Discord) and the web over one
engine and one model queue, reports both on /health and /metrics, and on SIGTERM stops everything with every
game saved."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

import discord
import httpx
import pytest
import yarl
from typer.testing import CliRunner

from bot.client import CyoaBot
from cyoa import wiring
from cyoa.cli import app as cli
from cyoa.service import STOPPED, Parts, run_service
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.turns import StoryEngine
from engine.writers import Writers
from tests.bot.fake_discord import FakeDiscord
from tests.bot.test_gateway_e2e import PREMISES, TOKEN, start_adventure
from web.launcher import PREFIX
from web.presenter import WebPresenter


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_runs_the_bot_and_the_web_together_and_sigterm_saves_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()

    async def scenario() -> dict[str, object]:
        async with FakeDiscord(TOKEN) as server, SQLiteGameStore(tmp_path / "games.db") as store:
            monkeypatch.setattr(discord.http.Route, "BASE", server.api_url)
            monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
            queue = BatchingWriter(FakeWriter(), gather_seconds=0.0)
            writers = Writers(queue)
            engine = StoryEngine(writers, premises=PREMISES)  # one engine, one queue: both frontends share them
            bot = CyoaBot(engine, store)
            bot._connection.guild_ready_timeout = 0.1
            web = Tables(engine, store, WebPresenter(), prefix=PREFIX)
            service = asyncio.create_task(run_service(Parts(writers, bot=bot, token=TOKEN, web=web, port=port)))
            base = f"http://127.0.0.1:{port}"
            async with asyncio.timeout(30):
                while not bot.is_ready():  # logging in, then the gateway's READY
                    await asyncio.sleep(0.05)
                await start_adventure(server)
                async with httpx.AsyncClient(base_url=base) as client:
                    while True:
                        try:
                            started = await client.post("/api/games", json={"premise": "A knight wakes."})
                            break
                        except httpx.TransportError:  # uvicorn still starting
                            await asyncio.sleep(0.05)
                    assert started.status_code == 201
                    health = (await client.get("/health")).json()
                    metrics = (await client.get("/metrics")).text
                os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends at `systemctl stop`
                await service
            assert web._closed and bot.tables._closed and bot.is_closed() and not queue.busy
            places = sorted(game.place.split(":")[0] for game in await store.unfinished())
            return {"health": health, "metrics": metrics, "places": places}

    seen = asyncio.run(scenario())
    assert seen["health"]["games"] == {"discord": 1, "web": 1} and seen["health"]["bot"] is True  # type: ignore[index]
    assert 'cyoa_games_running{frontend="discord"} 1.0' in str(seen["metrics"])
    assert 'cyoa_games_running{frontend="web"} 1.0' in str(seen["metrics"])
    assert seen["places"] == ["discord", "web"]  # both games saved, to resume at the next start
    assert STOPPED in caplog.text


def test_cyoa_serve_runs_what_it_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bool, bool, str, int | None]] = []
    monkeypatch.setattr(wiring, "serve_main", lambda *args: calls.append(args))
    assert CliRunner().invoke(cli, ["serve"]).exit_code == 0
    assert CliRunner().invoke(cli, ["serve", "--no-bot", "--port", "8080"]).exit_code == 0
    assert CliRunner().invoke(cli, ["serve", "--no-web", "--host", "0.0.0.0"]).exit_code == 0
    refused = CliRunner().invoke(cli, ["serve", "--no-bot", "--no-web"])
    assert refused.exit_code != 0 and "nothing to run" in refused.output
    assert calls == [(True, True, "127.0.0.1", 8000), (False, True, "127.0.0.1", 8080),
                     (True, False, "0.0.0.0", 8000)]


def test_the_systemd_unit_runs_cyoa_serve_and_stops_it_with_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    import configparser
    import shlex

    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(Path(__file__).parents[2] / "deploy" / "cyoa.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/.venv/bin/cyoa") and command[1] == "serve"
    calls: list[tuple[bool, bool, str, int | None]] = []
    monkeypatch.setattr(wiring, "serve_main", lambda *args: calls.append(args))
    assert CliRunner().invoke(cli, command[1:]).exit_code == 0  # the unit's arguments are ones cyoa takes
    assert calls == [(True, True, "127.0.0.1", 8000)]
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30
    home = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))["CYOA_HOME"]
    assert home in service["ReadWritePaths"].split() and service["ProtectSystem"] == "strict"
    assert "DISCORD_TOKEN" not in unit.get("Service", "Environment")  # the secret lives in the EnvironmentFile
