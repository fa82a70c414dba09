"""Load test of the Discord bot (not a test, not in CI): many games voting at once, through simcord.

    .venv/bin/python bench/bench_bot.py [--games 200] [--voters 10] [--rounds 3] [--close timer|early]
                                        [--lock-store]

The real bot and the real SQLite store run against simcord's offline Discord with a fake writer that answers
at once, so the figures are the bot's, the store's and simcord's, never the model's. Every round, each voter
of each game reacts with a number (some change their vote, some withdraw it and vote again), then the votes
close: ``timer`` closes every round by the vote window (each game has one member more than it has voters,
and a different one sits each round out, so the early close never fires); ``early`` keeps the same voters,
so from the second round on the last vote of a game closes it at once. After each round the SQLite file is
read back through a second, read-only connection: every vote must be stored as cast and every closed vote
must have taken the top choice and shown the next scene, else the run exits with 1.

Columns: a reaction's latency (p50, p95) is the wall time of one simcord reaction call, which returns once
the bot has settled; ``bot s`` is the time spent inside ``Tables.vote``/``unvote`` and ``store s`` inside the
store's writes (``writes`` of them), both waits on the event loop included, which simcord's settling keeps
busy; the rest of ``wall s`` is simcord (settling after every action, the virtual gateway and HTTP) and
discord.py. ``cpu s`` is the process's CPU time (both threads). The "saves, store alone" rows save sample
games again with nothing else on the event loop: the store's own cost of the whole-game rewrite that every
vote makes. Absolute figures depend on the machine; compare the rows of one run.

Time: simcord checks every live task against every timer each time it settles, and each game holds one
sleeping vote timer, so each reaction costs simcord more the more games are live (ten times the games, about
fourteen times the CPU per reaction); a reaction whose handler awaits nothing (taking off a reaction that is
not the standing vote) also waits out simcord's 50 ms settle interval (the p95 of a small run). On 2 cores 20 games
x 3 rounds take seconds, 200 x 1 about 3 minutes (what ``make bench`` runs), 200 x 3 about 10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import discord
import simcord

from bot.client import CyoaBot
from bot.launcher import build_bot
from bot.render import NUMBERS
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.game import Game
from engine.privacy import Forgotten
from engine.queue import BatchingWriter
from engine.servers import ServerSettings
from engine.turns import EngineRules, Premise

PREMISES = [Premise("fantasy", "A lost knight wakes in a glass forest.")]
MAX_ROUNDS = EngineRules().max_scenes - 1  # the last round shows the ending (the fake writer ends only there)


@dataclass
class Meter:
    """Durations, in seconds, of every call into the bot's vote handling and into the store's writes."""

    handler: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)


class MeasuredStore:
    """The real ``SQLiteGameStore``, with its writes timed and, with ``--lock-store``, taken one at a time.

    The store shares one aiosqlite connection between all games, and the bot saves different games
    concurrently (votes closing at the same instant, say). Two interleaved transactions on one connection
    fail with "cannot start a transaction within a transaction", and the failing one's rollback discards
    the other's half-written one. The lock is what a lock in the store would do, so the rest of the bot can
    be measured until the store has one; without it the run measures the store as it is. The lock does not
    cover the store's unclosed cursors: one finalised on the event-loop thread resets its statement while
    the aiosqlite thread may be running the same SQL, which fails now and then with "bad parameter or other
    API misuse"."""

    def __init__(self, store: SQLiteGameStore, meter: Meter, lock: bool) -> None:
        self.inner = store
        self.meter = meter
        self.lock = asyncio.Lock() if lock else None

    async def _write(self, work: Callable[[], Awaitable[None]]) -> None:
        if self.lock is None:
            await self._timed(work)
            return
        async with self.lock:
            await self._timed(work)  # timed inside the lock: the store's own time, not the wait for it

    async def _timed(self, work: Callable[[], Awaitable[None]]) -> None:
        started = time.perf_counter()
        try:
            await work()
        finally:
            self.meter.store.append(time.perf_counter() - started)

    async def save(self, game: Game) -> None:
        await self._write(lambda: self.inner.save(game))

    async def add_output_counts(self, counts: dict[str, dict[str, int]]) -> None:
        await self._write(lambda: self.inner.add_output_counts(counts))

    async def save_server_settings(self, server: str, values: dict[str, Any]) -> None:
        await self._write(lambda: self.inner.save_server_settings(server, values))

    async def set_opt_out(self, player: str, opted_out: bool) -> None:
        await self._write(lambda: self.inner.set_opt_out(player, opted_out))

    async def load(self, game_id: str) -> Game:
        return await self.inner.load(game_id)

    async def unfinished(self) -> list[Game]:
        return await self.inner.unfinished()

    async def server_settings(self, server: str) -> dict[str, Any]:
        return await self.inner.server_settings(server)

    async def opted_out(self) -> frozenset[str]:
        return await self.inner.opted_out()

    async def forget_player(self, player: str) -> Forgotten:
        return await self.inner.forget_player(player)


def time_votes(bot: CyoaBot, meter: Meter) -> None:
    """Time the bot's handling of every vote reaction: the reaction cog calls these two on ``bot.tables``."""
    tables = bot.tables
    for name in ("vote", "unvote"):
        method: Callable[..., Awaitable[bool]] = getattr(tables, name)

        async def timed_call(*args: Any, _method: Callable[..., Awaitable[bool]] = method, **kwargs: Any) -> bool:
            started = time.perf_counter()
            try:
                return await _method(*args, **kwargs)
            finally:
                meter.handler.append(time.perf_counter() - started)

        setattr(tables, name, timed_call)


@dataclass(frozen=True)
class Reaction:
    """One thing a voter does: put a number reaction on the scene message, or take it off."""

    actor: simcord.MemberActor
    message: discord.Message
    choice: int
    on: bool


@dataclass
class Table:
    """One game under test: its channel, its members and what each round's vote must come to."""

    place: str
    channel: simcord.ChannelHandle
    members: list[simcord.MemberActor]
    expected: dict[int, dict[str, int]] = field(default_factory=dict)  # position -> player -> final choice


@dataclass
class Phase:
    name: str
    count: int
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    handler: float = 0.0
    store: float = 0.0
    writes: int = 0


class LogCounter(logging.Handler):
    """Keeps the bot's warnings and errors (a failed background step is logged, never raised)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def timed(phases: list[Phase], meter: Meter, name: str, count: int) -> Iterator[Phase]:
    phase = Phase(name, count)
    handled, stored = len(meter.handler), len(meter.store)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        yield phase
    finally:
        phase.seconds, phase.cpu = time.perf_counter() - started, time.process_time() - cpu
        phase.handler, phase.store = sum(meter.handler[handled:]), sum(meter.store[stored:])
        phase.writes = len(meter.store) - stored
        phases.append(phase)


def plan_round(table: Table, game: Game, position: int, voters: list[simcord.MemberActor],
               rng: random.Random) -> list[Reaction] | None:
    """The reactions of one game in one round (None: its scene is not shown), and in ``table.expected`` the
    votes they must leave.

    Voter i: i % 5 == 1 votes a decoy, then the final choice, then takes the decoy off (a change of mind,
    and a removal that is not the standing vote); i % 5 == 3 votes, withdraws and votes again; the others
    vote once. The last voter always votes once, so with ``--close early`` its reaction is the one that
    closes the vote, after every other reaction of the game.
    """
    message = next((m for m in table.channel.history() if str(m.id) == game.current.message), None)
    if message is None:
        return None
    choices = len(game.current.scene.choices)
    expected: dict[str, int] = {}
    reactions: list[Reaction] = []
    for index, voter in enumerate(voters):
        final = rng.randrange(choices)
        expected[str(voter.id)] = final
        role = index % 5 if index < len(voters) - 1 else 0
        if role == 1 and choices > 1:
            decoy = (final + 1 + rng.randrange(choices - 1)) % choices
            reactions += [Reaction(voter, message, decoy, True), Reaction(voter, message, final, True),
                          Reaction(voter, message, decoy, False)]
        elif role == 3:
            reactions += [Reaction(voter, message, final, True), Reaction(voter, message, final, False),
                          Reaction(voter, message, final, True)]
        else:
            reactions.append(Reaction(voter, message, final, True))
    table.expected[position] = expected
    return reactions


async def react(reactions: list[Reaction], latencies: list[float]) -> None:
    for reaction in reactions:
        act = reaction.actor.react if reaction.on else reaction.actor.unreact
        started = time.perf_counter()
        await act(reaction.message, NUMBERS[reaction.choice])
        latencies.append(time.perf_counter() - started)


def interleave(per_game: list[list[Reaction]]) -> list[Reaction]:
    """Round-robin over the games, as many channels voting at once would arrive (simcord runs one at a time)."""
    longest = max((len(r) for r in per_game), default=0)
    return [reactions[i] for i in range(longest) for reactions in per_game if i < len(reactions)]


def check_round(db: Path, tables: list[Table], games: dict[str, str], position: int) -> list[str]:
    """What the SQLite file says about the vote on scene ``position`` of every game, against what was cast.
    A fresh read-only connection sees only what the store committed."""
    problems: list[str] = []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        stored: dict[str, dict[str, int]] = {}
        for game_id, player, choice in con.execute(
                "SELECT game_id, player, choice FROM votes WHERE position = ?", (position,)):
            stored.setdefault(game_id, {})[player] = choice
        chosen = dict(con.execute("SELECT game_id, chosen FROM scenes WHERE position = ? AND kind = 'shown'",
                                  (position,)).fetchall())
        rows = {r[0]: r[1:] for r in con.execute("SELECT id, scenes, state FROM games").fetchall()}
    for table in tables:
        game_id = games[table.place]
        expected = table.expected[position]
        votes = stored.get(game_id, {})
        if votes != expected:
            lost = len(set(expected) - set(votes))
            extra = len(set(votes) - set(expected))
            wrong = sum(1 for p in set(votes) & set(expected) if votes[p] != expected[p])
            problems.append(f"game {game_id} vote {position + 1}: {len(votes)} vote(s) stored of {len(expected)} "
                            f"cast ({lost} lost, {extra} extra, {wrong} with the wrong choice)")
        counts = Counter(expected.values())
        top = max(counts.values())
        tied = sorted(c for c, n in counts.items() if n == top)
        scenes, state = rows.get(game_id, (0, "{}"))
        shown = json.loads(state).get("path", [])
        # The state JSON is what a restart resumes from: it must say the same as the rows.
        in_state = {v["player"]: v["choice"] for v in shown[position]["votes"]} if len(shown) > position else {}
        if in_state != votes:
            problems.append(f"game {game_id} vote {position + 1}: the saved state has {len(in_state)} vote(s), "
                            f"the vote rows {len(votes)}")
        took = chosen.get(game_id)
        if took not in tied:
            problems.append(f"game {game_id} vote {position + 1}: took choice {took}, the votes say {tied}")
        elif len(tied) > 1 and shown[position].get("tie_break") != tied:
            problems.append(f"game {game_id} vote {position + 1}: a tie {tied} without its recorded draw")
        if scenes != position + 2 or len(shown) != position + 2 or shown[-1].get("message") is None:
            problems.append(f"game {game_id} vote {position + 1}: the next scene is not stored as shown "
                            f"({scenes} scene(s) stored)")
    return problems


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def pregenerated(bot: CyoaBot) -> int:
    return sum(1 for g in bot.tables.games.values() if not g.ended and g.current.branches)


async def measure(args: argparse.Namespace, db: Path) -> tuple[list[Phase], dict[str, Any], list[str], list[str]]:
    """The phases, notes, what the vote check found wrong, and the bot's errors (each list empty if all went well)."""
    logs = LogCounter()
    logging.getLogger().addHandler(logs)
    phases: list[Phase] = []
    problems: list[str] = []
    notes: dict[str, Any] = {}
    meter = Meter()
    members_per_game = args.voters + (1 if args.close == "timer" else 0)
    async with SQLiteGameStore(db) as sqlite_store:
        store = MeasuredStore(sqlite_store, meter, lock=args.lock_store)
        # No gathering window in the queue: simcord's clock is virtual, and a real-time wait does not mix.
        bot = build_bot(FakeWriter(), store, PREMISES, gather_seconds=0)
        time_votes(bot, meter)
        async with simcord.run(bot, settle_timeout=args.settle_timeout) as env:
            tables: list[Table] = []
            with timed(phases, meter, "setup: servers, channels, members", args.games * members_per_game):
                for s in range(math.ceil(args.games / args.per_server)):
                    guild = env.create_guild(f"server {s}")
                    await bot.tables.configure(str(guild.id), vote_window=args.window,
                                               max_games=max(args.per_server, ServerSettings().max_games))
                    for c in range(min(args.per_server, args.games - s * args.per_server)):
                        channel = guild.create_text_channel(f"adventure-{c}")
                        members = [guild.add_member(env.create_user(f"s{s}c{c}m{m}"))
                                   for m in range(members_per_game)]
                        tables.append(Table(bot.tables.place(str(guild.id), str(channel.id)), channel, members))
            with timed(phases, meter, "start games (slash)", len(tables)) as phase:
                for table in tables:
                    started = time.perf_counter()
                    result = await table.members[0].slash(table.channel, "adventure start", genre="fantasy")
                    phase.latencies.append(time.perf_counter() - started)
                    if result.ephemeral:
                        answer = result.followups[-1] if result.followups else result.response
                        problems.append(f"{table.place}: the start was refused: {answer and answer.content}")
            games = {t.place: bot.tables.games[t.place].id for t in tables if t.place in bot.tables.games}
            notes["games with branches written in advance, after the starts"] = pregenerated(bot)
            rng = random.Random(args.seed)
            live = [t for t in tables if t.place in games]
            for position in range(args.rounds):
                per_game, playing = [], []
                for table in live:
                    # timer: member (position mod n+1) sits this round out, so the last round's voters are
                    # never all back and only the window closes the vote.
                    voters = ([m for i, m in enumerate(table.members) if i != position % len(table.members)]
                              if args.close == "timer" else table.members)
                    planned = plan_round(table, bot.tables.games[table.place], position, voters, rng)
                    if planned is None:
                        problems.append(f"game {games[table.place]}: no scene to vote on in round {position + 1}")
                    else:
                        per_game.append(planned)
                        playing.append(table)
                live = playing
                closes_early = args.close == "early" and position > 0
                closing = [reactions.pop() for reactions in per_game] if closes_early else []
                reactions = interleave(per_game)
                with timed(phases, meter, f"round {position + 1}: reactions", len(reactions)) as phase:
                    await react(reactions, phase.latencies)
                if closes_early:
                    with timed(phases, meter, f"round {position + 1}: close (last votes)", len(closing)) as phase:
                        await react(closing, phase.latencies)
                else:
                    with timed(phases, meter, f"round {position + 1}: close (window)", len(live)):
                        await env.advance_time(args.window + 1)
                notes[f"games with branches written in advance, after round {position + 1}"] = pregenerated(bot)
                problems += check_round(db, live, games, position)
                # The store on its own, with nothing else on the event loop: the whole-game rewrite that every
                # vote costs, at this round's game length (the same state again, so nothing changes).
                sample = [bot.tables.games[t.place] for t in live[: args.store_sample]]
                with timed(phases, meter, f"round {position + 1}: saves, store alone", len(sample)) as phase:
                    for game in sample:
                        started = time.perf_counter()
                        await sqlite_store.save(game)
                        phase.latencies.append(time.perf_counter() - started)
            notes["bot errors seen by simcord"] = len(env.errors)
            errors = [f"bot error: {error!r}" for error in env.errors[:5]]
        queue = bot.tables.engine.writer
        if isinstance(queue, BatchingWriter):
            notes["writer calls (scenes written)"] = f"{len(queue.batches)} ({sum(queue.batches)})"
            await queue.close()
    logging.getLogger().removeHandler(logs)
    notes["warnings and errors logged"] = len(logs.records)
    # The distinct causes first (a store failure is logged once per game it stopped, each naming its game).
    causes = Counter(cause(record) for record in logs.records)
    errors[:0] = [f"logged {n} time(s): {text}" for text, n in causes.most_common(3)]
    return phases, notes, problems, errors


def cause(record: logging.LogRecord) -> str:
    """A logged failure by its root cause, without the game it names."""
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        return record.getMessage()
    root = error.__cause__ or error
    return f"{record.getMessage()}: {type(error).__name__} from {type(root).__name__}: {root}"


def row(name: str, phases: list[Phase]) -> str:
    count, seconds = sum(p.count for p in phases), sum(p.seconds for p in phases)
    latencies = [x for p in phases for x in p.latencies]
    cells = [f"{count:>7}", f"{seconds:>8.2f}", f"{sum(p.cpu for p in phases):>7.2f}",
             f"{count / max(seconds, 1e-9):>9.0f}", f"{percentile(latencies, .5) * 1e3:>7.1f}",
             f"{percentile(latencies, .95) * 1e3:>7.1f}", f"{sum(p.handler for p in phases):>7.2f}",
             f"{sum(p.writes for p in phases):>7}", f"{sum(p.store for p in phases):>8.2f}"]
    return f"{name:<36}" + "".join(cells)


def report(args: argparse.Namespace, phases: list[Phase], notes: dict[str, Any], problems: list[str],
           errors: list[str], db: Path) -> None:
    closing = "the window closes each vote" if args.close == "timer" else "the last vote closes it from round 2"
    print(f"bot load test: {args.games} games x {args.voters} voters x {args.rounds} rounds, {closing}, "
          f"{args.per_server} games per server, store {'locked' if args.lock_store else 'as it is'} "
          "(simcord, FakeWriter, SQLite)")
    print(f"{'phase':<36}{'events':>7}{'wall s':>8}{'cpu s':>7}{'events/s':>9}{'p50 ms':>7}{'p95 ms':>7}"
          f"{'bot s':>7}{'writes':>7}{'store s':>8}")
    for phase in phases:
        print(row(phase.name, [phase]))
    print(row("reactions, all rounds", [p for p in phases if p.name.endswith("reactions")]))
    print(row("closes, all rounds", [p for p in phases if "close" in p.name]))
    wal = db.with_name(db.name + "-wal")
    wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    print(f"sqlite file: {db.stat().st_size / 1e6:.2f} MB (+ WAL {wal_mb:.2f} MB)")
    for name, value in notes.items():
        print(f"{name}: {value}")
    if problems:
        print(f"votes FAILED: {len(problems)} problem(s); the first ones:")
        for problem in problems[:10]:
            print(f"  {problem}")
    else:
        votes = args.games * args.voters * args.rounds
        print(f"votes OK: all {votes} stored as cast; every vote took the top choice and showed the next scene")
    # A failed save whose vote a later save carried still fails the run: the next crash would lose it.
    print("bot errors FAILED; the first ones:" if errors else "bot errors: none")
    for error in errors[:5]:
        print(f"  {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--voters", type=int, default=10, help="voters per game")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--close", choices=("timer", "early"), default="timer",
                        help="timer: the window closes every vote; early: the last vote does, from round 2 on")
    parser.add_argument("--per-server", type=int, default=ServerSettings().max_games,
                        help="games per server (above the default, the servers' max_games is raised)")
    parser.add_argument("--lock-store", action="store_true",
                        help="take the store's writes one at a time, as a fix of its shared connection would")
    parser.add_argument("--window", type=int, default=3600,
                        help="vote window in seconds; simcord also fires a virtual timer on the real clock when "
                             "nobody advances time, so it must outlast the longest phase in real time")
    parser.add_argument("--settle-timeout", type=float, default=600.0,
                        help="simcord's, in real seconds; below --window, or settling waits for the vote timers")
    parser.add_argument("--store-sample", type=int, default=50,
                        help="games saved again after each round to time the store alone")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", type=Path, help="the SQLite file to create (default: a temporary one)")
    args = parser.parse_args()
    if min(args.games, args.voters, args.rounds) < 1 or not 1 <= args.per_server <= 100:
        parser.error("--games, --voters and --rounds must be positive, --per-server 1-100")
    if args.rounds > MAX_ROUNDS:
        parser.error(f"at most {MAX_ROUNDS} rounds: the last one shows the ending, which has no vote")
    if not 0 < args.settle_timeout < args.window <= 3600:
        parser.error("need 0 < --settle-timeout < --window <= 3600")
    with tempfile.TemporaryDirectory() as folder:
        db = args.db or Path(folder) / "cyoa.db"
        if db.exists():
            parser.error(f"{db} exists; the check needs a fresh file")
        phases, notes, problems, errors = asyncio.run(measure(args, db))
        report(args, phases, notes, problems, errors, db)
    sys.exit(1 if problems or errors else 0)


if __name__ == "__main__":
    main()
