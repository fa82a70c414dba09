"""Fairness: one server floods the storyteller while another plays normally.

The normal server (``calm``) plays ``--games`` games, three players each: they read each scene for a few
seconds, then all vote, which closes the vote at once; what is measured is the time from that close to the
next scene shown. The flooding server (``flood``) runs ``--flood-games`` games whose owners retry as often as
the cooldown lets them, start new games with fresh accounts whenever a slot is free, and post feedback from
fresh accounts without pause. Both run on the real engine, tables, batching queue and a real SQLite file; the
storyteller is the fake writer behind a cost model of the 135 M model on 2 cores (a batch of n scenes takes
``base + n * per_scene`` seconds, scaled down by ``--speed``).

The figure: the calm server's p95 from vote close to next scene, with the flood, divided by the same p95
measured alone in the same run. The goal is at most 2.

    python bench/bench_fairness.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.store import SQLiteGameStore
from engine.errors import CyoaError
from engine.fakes import FakeWriter, RecordingPresenter
from engine.ports import WriteRequest, WrittenScene
from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.turns import StoryEngine


class CostlyWriter(FakeWriter):
    """The fake storyteller, taking as long as the real one would for each batch (scaled)."""

    def __init__(self, base: float, per_scene: float) -> None:
        super().__init__()
        self.base, self.per_scene = base, per_scene

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        await asyncio.sleep(self.base + self.per_scene * len(requests))
        return await super().write(requests)


@dataclass
class Load:
    games: int = 4
    flood_games: int = 40
    seconds: float = 20.0
    speed: float = 10.0  # real seconds are this many times shorter than the modelled ones
    base: float = 1.0  # modelled seconds per batch
    per_scene: float = 0.85  # modelled seconds per scene in a batch
    reading: tuple[float, float] = (30.0, 60.0)  # modelled seconds players read before they all vote (a window)
    latencies: list[float] = field(default_factory=list)
    refused: int = 0


async def calm_game(tables: Tables, load: Load, number: int, stop: float, rng: random.Random) -> None:
    players = [f"calm{number}-{p}" for p in range(3)]
    game = await tables.start("calm", f"c{number}", players[0], "fantasy", f"A lantern maker in town {number}.")
    first = True
    while time.monotonic() < stop and not game.ended:
        await asyncio.sleep(rng.uniform(*load.reading) / load.speed)
        message = game.current.message or ""
        choice = rng.randrange(len(game.current.scene.choices))
        for player in players[:-1]:
            await tables.vote(game.place, player, choice, message)
        before = len(game.path)
        started = time.monotonic()
        if first:  # at the opening nobody has voted before, so the vote closes at its deadline: close it now
            await tables.vote(game.place, players[-1], choice, message)
            async with tables._lock(game):
                await tables._close(game)
            first = False
        else:  # everyone still playing has voted: the vote closes at once
            await tables.vote(game.place, players[-1], choice, message)
        if len(game.path) > before:
            load.latencies.append((time.monotonic() - started) * load.speed)


async def flood_game(tables: Tables, load: Load, number: int, stop: float) -> None:
    accounts = itertools.count()
    channel = f"f{number}"
    place = tables.place("flood", channel)
    while time.monotonic() < stop:
        try:
            game = tables.game_at(place)
            if game is None or game.ended:
                await tables.start("flood", channel, f"flood{number}-{next(accounts)}", "fantasy",
                                   f"A flood of doors number {number}.")
            else:
                await tables.retry(place, game.owner or "")
        except CyoaError:
            load.refused += 1
        await asyncio.sleep(0.01)


async def flood_feedback(tables: Tables, load: Load, stop: float) -> None:
    accounts = itertools.count()
    while time.monotonic() < stop:
        for number in range(load.flood_games):
            try:
                await tables.feedback(tables.place("flood", f"f{number}"), f"spam{next(accounts)}",
                                      "more more more more")
            except CyoaError:
                load.refused += 1
        await asyncio.sleep(0.01)


async def run(load: Load, flood: bool, folder: Path) -> Load:
    async with SQLiteGameStore(folder / f"fairness-{flood}.db") as store:
        queue = BatchingWriter(CostlyWriter(load.base / load.speed, load.per_scene / load.speed), max_batch=8,
                               gather_seconds=0.01)
        tables = Tables(StoryEngine(queue, seed=1), store, RecordingPresenter())
        if flood:
            await tables.configure("flood", max_games=100, steer_cooldown=5, start_cooldown=5)
        rng = random.Random(7)
        stop = time.monotonic() + load.seconds
        work = [calm_game(tables, load, n, stop, rng) for n in range(load.games)]
        if flood:
            work += [flood_game(tables, load, n, stop) for n in range(load.flood_games)]
            work.append(flood_feedback(tables, load, stop))
        await asyncio.gather(*work)
        await tables.close()
        await queue.close()
    return load


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values[0] if values else float("nan"))


def measure(seconds: float = 20.0, games: int = 4, flood_games: int = 40, speed: float = 10.0) -> dict[str, float]:
    """Alone, then flooded, in one run: the calm server's p95 (modelled seconds) and their ratio."""
    with tempfile.TemporaryDirectory() as folder:
        alone = asyncio.run(run(Load(games, flood_games, seconds, speed), False, Path(folder)))
        flooded = asyncio.run(run(Load(games, flood_games, seconds, speed), True, Path(folder)))
    # A floor of one modelled batch of one: below it the two figures are both "at once" and their ratio noise.
    floor = Load().base + Load().per_scene  # modelled seconds, as the latencies are
    return {"alone_p95": p95(alone.latencies), "flooded_p95": p95(flooded.latencies),
            "alone_scenes": len(alone.latencies), "flooded_scenes": len(flooded.latencies),
            "flood_refused": flooded.refused,
            "ratio": max(p95(flooded.latencies), floor) / max(p95(alone.latencies), floor)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="real seconds each half runs")
    parser.add_argument("--games", type=int, default=4, help="games of the calm server")
    parser.add_argument("--flood-games", type=int, default=40, help="games of the flooding server")
    parser.add_argument("--speed", type=float, default=10.0, help="how much faster than modelled time to run")
    args = parser.parse_args()
    figures = measure(args.seconds, args.games, args.flood_games, args.speed)
    print(f"calm server, vote close -> next scene, p95 (modelled s): alone {figures['alone_p95']:.2f} "
          f"({figures['alone_scenes']:.0f} scenes), flooded {figures['flooded_p95']:.2f} "
          f"({figures['flooded_scenes']:.0f} scenes); ratio {figures['ratio']:.2f} (goal <= 2); "
          f"flood requests refused: {figures['flood_refused']:.0f}")


if __name__ == "__main__":
    main()
