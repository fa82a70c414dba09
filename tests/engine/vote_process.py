"""A game process for the kill-and-restart test: ``start`` opens a vote and records votes from stdin until it
is killed; ``resume`` reloads the store, waits for the vote's deadline and continues the game."""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote

RULES = VoteRules(window_seconds=2.0, quorum=1)


async def start(path: Path) -> None:
    async with SQLiteGameStore(path) as store:
        engine = StoryEngine(FakeWriter())
        game = await engine.start("channel-7", "mecha", "A pilot wakes.", ["ana", "ben", "cam", "dee"])
        open_vote(game, RULES, datetime.now(UTC))
        await store.save(game)
        print(f"ready {game.id}", flush=True)
        for count, line in enumerate(sys.stdin, start=1):
            _, player, choice = line.split()
            cast(game, player, int(choice), datetime.now(UTC))
            await store.save(game)  # every vote is stored as it arrives
            print(f"saved {count}", flush=True)


async def resume(path: Path) -> None:
    async with SQLiteGameStore(path) as store:
        [game] = await store.unfinished()
        deadline = game.current.vote_deadline
        assert deadline is not None
        votes = [(v.player, v.choice) for v in game.current.votes]
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))  # rescheduled from the store
        result = close_vote(game, RULES, datetime.now(UTC), seed=zlib.crc32(game.id.encode()))
        assert result.closed and result.choice is not None
        await StoryEngine(FakeWriter()).choose(game, result.choice)
        await store.save(game)
        print(json.dumps({"votes": votes, "choice": result.choice, "scenes": len(game.path),
                          "chosen": game.path[0].chosen}), flush=True)


if __name__ == "__main__":
    asyncio.run((start if sys.argv[1] == "start" else resume)(Path(sys.argv[2])))
