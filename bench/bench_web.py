"""Load benchmark (not a test): the web API over real HTTP, against `cyoa web` (uvicorn) with the real champion.

    .venv/bin/python bench/bench_web.py --games 10 --players 5 --seconds 240 [--vote-seconds 20]

The server runs as its own process (`cyoa web`, the champion of $CYOA_HOME; run `make play` or `cyoa
bootstrap` once first), as a server owner runs it. This process is the players: ``--games`` games, each
started by one player over the first 20 s, joined by the others of its ``--players`` through the link. Every
player is its own client (its own session cookie) behind its own address (``X-Forwarded-For``, as a TLS proxy
in front of uvicorn sends it), holds the game's event stream open like the page does, and plays like a person:
reads each new scene (GET the game, its history), thinks 2-10 s, votes (sometimes changes its mind and
withdraws), rates some scenes, sets a nickname, sends feedback now and then. Every API call's time is recorded,
by endpoint; reported: count, median, p95 and max per endpoint and over all, errors, scenes reached, the
machine. The prototype's target: p95 of every API call <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PREMISES = ["A transfer student finds a sealed letter in her shoe locker.",
            "The last train of the night stops at a station that is not on any map.",
            "A shrine fox offers you three wishes, each with a price.",
            "Your mecha squad's radio picks up a voice from a pilot lost ten years ago.",
            "The school's cooking club must win the festival or be disbanded."]


@dataclass
class Figures:
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    scenes: dict[str, int] = field(default_factory=dict)  # room -> highest scene index seen
    accepted_late: int = 0  # calls answered "writing" (the model was busy): 202 starts, votes that closed a vote


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Player:
    def __init__(self, base: str, index: int, figures: Figures, rng: random.Random) -> None:
        self.client = httpx.AsyncClient(base_url=base, timeout=60,
                                        headers={"x-forwarded-for": f"10.{index // 250}.{index % 250}.7"})
        self.figures, self.rng, self.index = figures, rng, index

    async def call(self, name: str, method: str, path: str, body: Any = None) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self.figures.errors[f"{name}: {type(exc).__name__}"] += 1
            return None
        self.figures.calls[name].append(time.perf_counter() - started)
        if response.status_code >= 400:
            reason = response.json().get("error", "")[:60] if "json" in response.headers.get("content-type", "") else ""
            self.figures.errors[f"{name}: {response.status_code} {re.sub(r'[0-9]+', 'N', reason)}"] += 1
        return response

    async def play(self, room: str, until: float) -> None:
        """Follow the game by its event stream until ``until``; vote, rate and talk like a person."""
        await self.call("POST /api/me", "POST", "/api/me", {"nickname": f"player{self.index}"})
        tasks: set[asyncio.Task[None]] = set()
        try:
            async with self.client.stream("GET", f"/api/games/{room}/events",
                                          timeout=httpx.Timeout(60, read=None)) as events:
                tasks.add(asyncio.create_task(self.turn(room)))  # the scene already shown
                kind = ""
                async for line in events.aiter_lines():
                    if time.monotonic() > until:
                        break
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "scene":
                        index = json.loads(line[6:]).get("index", 0)
                        self.figures.scenes[room] = max(self.figures.scenes.get(room, 0), index)
                        tasks.add(asyncio.create_task(self.turn(room)))
        except httpx.HTTPError as exc:
            self.figures.errors[f"events: {type(exc).__name__}"] += 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def turn(self, room: str) -> None:
        game = await self.call("GET /api/games/{room}", "GET", f"/api/games/{room}")
        await self.call("GET /api/games/{room}/history", "GET", f"/api/games/{room}/history")
        if game is None or game.status_code != 200 or game.json().get("writing"):
            return
        view = game.json()
        if view["ended"] or not view["scene"]["choices"]:
            return
        await asyncio.sleep(self.rng.uniform(2, 10))  # reading the scene
        choices = len(view["scene"]["choices"])
        favourite = 0 if self.rng.random() < 0.6 else self.rng.randrange(choices)
        if self.rng.random() < 0.15:  # changes its mind: withdraws, then votes again
            await self.call("POST /api/games/{room}/vote", "POST", f"/api/games/{room}/vote",
                            {"choice": self.rng.randrange(choices)})
            await asyncio.sleep(self.rng.uniform(0.5, 2))
            await self.call("DELETE /api/games/{room}/vote", "DELETE", f"/api/games/{room}/vote")
        voted = await self.call("POST /api/games/{room}/vote", "POST", f"/api/games/{room}/vote", {"choice": favourite})
        if voted is not None and voted.status_code == 200 and voted.json().get("status") == "writing":
            self.figures.accepted_late += 1
        if self.rng.random() < 0.4:
            await self.call("POST /api/games/{room}/rate", "POST", f"/api/games/{room}/rate",
                            {"mark": self.rng.choice(["star", "up", "down"]), "scene": view["scene"]["index"]})
        if self.rng.random() < 0.05:
            await self.call("POST /api/games/{room}/feedback", "POST", f"/api/games/{room}/feedback",
                            {"text": "The scene with the lantern was lovely."})

    async def close(self) -> None:
        await self.client.aclose()


async def game(base: str, number: int, args: argparse.Namespace, figures: Figures, until: float) -> None:
    rng = random.Random(number)
    players = [Player(base, number * args.players + i, figures, rng) for i in range(args.players)]
    try:
        await asyncio.sleep(rng.uniform(0, 20))  # starts spread over the first 20 s, as on a real site
        genre = ["magic_school", "fantasy", "mecha", "slice_of_life", None][number % 5]
        started = await players[0].call("POST /api/games", "POST", "/api/games",
                                        {"genre": genre, "premise": PREMISES[number % len(PREMISES)]})
        if started is None or started.status_code not in (201, 202):
            return
        room = started.json()["room"]
        if started.status_code == 202:
            figures.accepted_late += 1
        await asyncio.gather(*(player.play(room, until) for player in players))
    finally:
        await asyncio.gather(*(player.close() for player in players))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_up(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"the server did not come up within {seconds:.0f} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CYOA_WEB_VOTE_SECONDS": str(args.vote_seconds)}
    server = subprocess.Popen([sys.executable, "-m", "cyoa", "web", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=Path(args.server_log).open("w"))  # noqa: SIM115
    try:
        await wait_up(base, 300)  # loading the champion (and converting it for llama.cpp once) takes a while
        figures = Figures()
        began = time.monotonic()
        await asyncio.gather(*(game(base, n, args, figures, began + args.seconds) for n in range(args.games)))
        async with httpx.AsyncClient(base_url=base) as client:
            health = (await client.get("/health")).json()
            metrics = (await client.get("/metrics")).text
    finally:
        server.terminate()
        server.wait(timeout=60)
    every = [t for times in figures.calls.values() for t in times]
    endpoints = {name: {"calls": len(times), "median_s": round(statistics.median(times), 3),
                        "p95_s": round(pct(times, 0.95), 3), "max_s": round(max(times), 3)}
                 for name, times in sorted(figures.calls.items())}
    written = re.search(r'cyoa_scenes_written_total\{version="[^"]+"\} ([0-9.]+)', metrics)
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "games": args.games, "players": args.games * args.players, "seconds": args.seconds,
        "vote_seconds": args.vote_seconds, "calls": len(every), "p95_s": round(pct(every, 0.95), 3),
        "median_s": round(statistics.median(every), 3) if every else None, "max_s": round(max(every), 3),
        "worst_endpoint_p95_s": max(e["p95_s"] for e in endpoints.values()),
        "answered_writing": figures.accepted_late, "errors": dict(figures.errors),
        "scenes_reached": dict(sorted(figures.scenes.items())), "storyteller": health.get("storyteller"),
        "scenes_written": float(written.group(1)) if written else None, "endpoints": endpoints,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--players", type=int, default=5, help="players per game")
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--vote-seconds", type=int, default=20)
    parser.add_argument("--server-log", default="/tmp/cyoa-bench-web-server.log")
    report = asyncio.run(run(parser.parse_args()))
    print(json.dumps(report, indent=2))
    target = "met" if report["worst_endpoint_p95_s"] <= 2.0 else "NOT met"
    print(f"p95 of every API call <= 2 s: {target} (worst endpoint p95 {report['worst_endpoint_p95_s']} s)")


if __name__ == "__main__":
    main()
