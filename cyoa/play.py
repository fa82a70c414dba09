"""``cyoa play``: the terminal frontend, a one-player room on the shared session layer (``engine.tables``).
It parses what the player types, calls ``Tables`` and shows what it is given through ``TerminalPresenter``;
the rules (saving, ratings, checks) are the engine's, the storage is the game store's."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from cyoa.settings import Settings
from cyoa.wiring import Wiring
from cyoa.wiring import bundled_premises as bundled_premises  # re-exported: web.launcher and benches use it
from data.store import GameSummary, SQLiteGameStore
from engine.errors import CyoaError, GameRuleError, Hint
from engine.game import Game
from engine.genres import GENRES
from engine.ports import SceneWriter
from engine.tables import Tables
from engine.writers import Writers

PREFIX = "terminal"  # places are terminal:local:<slot>, one slot a game: a one-player room each
SERVER = "local"
PLAYER = "you"
LEGACY_PLACE = "terminal"  # where every terminal game was saved before the terminal ran on Tables
HELP = ("[bold]1-4[/] choose · [bold]r[/] retry · [bold]u[/] undo · [bold]*1-*5[/] (or [bold]4 stars[/]) rate "
        "this scene · [bold]n[/] new game · [bold]q[/] quit")
HINTS = {Hint.START: "`n` starts a new game", Hint.END: "`q` quits; `cyoa play --new` starts another"}
"""How a refusal's hint reads in the terminal (the engine names no frontend's commands)."""
RATING = re.compile(r"[*s](\d)|(\d) ?stars?")

console = Console()


def is_terminal(place: str) -> bool:
    return place == LEGACY_PLACE or place.startswith(f"{PREFIX}:")


def error_text(error: CyoaError) -> str:
    hint = HINTS.get(error.hint) if isinstance(error, GameRuleError) and error.hint is not None else None
    return f"[red]{error}[/]" + (f" ({hint})" if hint else "")


def show(game: Game) -> None:
    shown = game.current
    scene = shown.scene
    title = f"{game.genre.replace('_', ' ')} · scene {len(game.path)} · {scene.model_version}"
    body = scene.narration
    if scene.is_ending:
        body += f"\n\n[bold]The end[/] ({scene.ending})."
    else:
        body += "\n\n" + "\n".join(f"[bold]{n}.[/] {text}" for n, text in enumerate(scene.choices, 1))
    console.print(Panel(body, title=title, subtitle="repaired scene" if scene.repaired else None))


class TerminalPresenter:
    """``engine.ports.Presenter`` on the terminal. A scene being written on demand grows in a panel that
    vanishes when the checked scene is shown in its place (or is taken back, when an attempt fails its checks
    and starts again)."""

    def __init__(self) -> None:
        self.title = "the storyteller is writing…"
        self._live: Live | None = None

    def expect(self, title: str) -> None:
        """The title of the next draft (what is being written: the opening, a retry...)."""
        self.title = title

    def _panel(self, text: str) -> Panel:
        return Panel(text or "[dim]…[/]", title=f"[dim]{self.title}[/]")

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    async def show(self, game: Game) -> str | None:
        self._stop()
        show(game)
        return str(len(game.path))  # the scene's handle: ratings name it

    async def read_votes(self, game: Game) -> dict[str, set[int]] | None:
        return None  # the one player's vote is decided at once; nothing stands to be read back

    def draft(self, place: str, text: str | None) -> None:
        if text is None:
            self._stop()
            return
        if self._live is None:
            self._live = Live(self._panel(""), console=console, transient=True, refresh_per_second=15)
            self._live.start()
        self._live.update(self._panel(text))

    async def vote_extended(self, game: Game) -> None:
        console.print("[dim]the vote was extended[/]")

    async def failed(self, game: Game, reason: str) -> None:
        console.print(f"[red]{escape(reason)}[/]; choose again")

    async def notice(self, game: Game, text: str) -> None:
        console.print(f"[yellow]{escape(text)}[/]")


async def ask(prompt: str) -> str | None:
    """Read a line on a worker thread, so pre-generation goes on while the player reads; None at end of input."""
    try:
        return (await asyncio.to_thread(input, prompt)).strip()
    except EOFError:
        return None


class Room:
    """The terminal's one-player room: one game at a time, on the shared session layer (``Tables``)."""

    def __init__(self, tables: Tables, presenter: TerminalPresenter) -> None:
        self.tables = tables
        self.presenter = presenter
        self.game: Game | None = None

    async def start(self, genre: str | None, premise: str | None) -> Game:
        self.presenter.expect("the storyteller is writing the opening…")
        game = await self.tables.start(SERVER, uuid.uuid4().hex[:12], PLAYER, genre, premise)
        self._leave(game)  # only once the new game is there: a start that fails leaves the old one playing
        self.game = game
        return game

    async def resume(self, game: Game) -> Game:
        if game.place == LEGACY_PLACE:  # migrated: a slot of its own, saved there when it is shown
            game.place = self.tables.place(SERVER, game.id)
        taken = await self.tables.take(game)
        self._leave(taken)
        self.game = taken
        return taken

    def _leave(self, new: Game) -> None:
        """Let go of the game played so far for ``new``."""
        if self.game is not None and self.game.place != new.place:
            self.tables.leave(self.game.place)  # saved already: every change is saved before it is shown

    async def apply(self, answer: str) -> None:
        """One command from the player."""
        game = self.game
        assert game is not None
        lowered = answer.lower()
        # The terminal's player owns the room: they steer any game they play, as a moderator would.
        if lowered in {"r", "retry"}:
            self.presenter.expect("writing this scene again…")
            await self.tables.retry(game.place, PLAYER, manager=True)
        elif lowered in {"u", "undo"}:
            await self.tables.undo(game.place, PLAYER, manager=True)
        elif (rating := RATING.fullmatch(lowered)) is not None:
            stars = int(rating.group(1) or rating.group(2))  # Tables refuses what is not 1 to 5
            message = game.current.message
            if message is None or not await self.tables.rate(game.place, PLAYER, message, "star", stars=stars):
                raise CyoaError("this scene is not shown yet")
            console.print(f"rated scene {len(game.path)}: {'★' * stars}")
        elif answer.isdigit():
            self.presenter.expect("the storyteller is writing…")
            await self.tables.decide(game.place, PLAYER, int(answer) - 1)
        else:
            raise CyoaError(f"{answer!r}? {HELP}")


async def pick_game(store: SQLiteGameStore, room: Room, genre: str | None, premise: str | None,
                    new: bool) -> Game:
    if not new and genre is None and premise is None:
        waiting = [g for g in await store.unfinished() if is_terminal(g.place)]
        if waiting:
            game = waiting[-1]
            console.print(f"resuming game [bold]{game.id}[/] ({game.genre}); `cyoa play --new` starts another")
            return await room.resume(game)
    if genre is None and premise is None:
        premises = room.tables.engine.premises
        console.print("genres: " + ", ".join(g.id for g in GENRES if any(p.genre == g.id for p in premises)))
        answer = await ask("genre (Enter for any): ")
        genre = answer or None
        await room.tables.check_start(SERVER, "-", genre)  # an unknown genre is refused before the premise
        premise = await ask("premise, one sentence (Enter for one of the bundled stories'): ") or None
    return await room.start(genre, premise)


async def play_loop(room: Room, new_game: Callable[[], Awaitable[Game]]) -> None:
    while True:
        game = room.game
        assert game is not None
        console.print(HELP)
        answer = await ask("> ")
        if answer is None or answer.lower() in {"q", "quit"}:
            console.print(f"saved; `cyoa play --game {game.id}` (or just `cyoa play`) continues it")
            return
        try:
            if answer.lower() in {"n", "new"}:
                await new_game()
            else:
                await room.apply(answer)
        except CyoaError as exc:
            console.print(error_text(exc))


def list_games(store_path: Path) -> None:
    async def fetch() -> list[GameSummary]:
        async with SQLiteGameStore(store_path) as store:
            return [g for g in await store.list_games() if is_terminal(g.place)]

    table = Table("game", "genre", "status", "scenes", "model", "updated", "premise", title="saved games")
    for g in asyncio.run(fetch()):
        table.add_row(g.id, g.genre, g.status, str(g.scenes), g.model_version, g.updated_at[:16], g.premise[:50])
    console.print(table)


def play(
    genre: Annotated[str | None, typer.Option(help="Genre of a new game (default: ask).")] = None,
    premise: Annotated[str | None, typer.Option(help="Premise of a new game (default: a bundled one).")] = None,
    game: Annotated[str | None, typer.Option("--game", help="Continue this saved game.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new game even if one is unfinished.")] = False,
    model: Annotated[str | None, typer.Option(help="Model URI for a new game (default: @champion).")] = None,
    listing: Annotated[bool, typer.Option("--list", help="Show saved games and exit.")] = False,
) -> None:
    """Play in the terminal: read each scene, choose by number, retry, undo, rate; games are saved."""
    from models.reload import ChampionWatcher  # imported here: torch and MLflow take seconds to import

    settings = Settings()
    store_path = settings.games_db
    if listing:
        list_games(store_path)
        return

    wiring = Wiring(settings)

    async def load(version: str) -> SceneWriter:
        with console.status(f"loading the storyteller ({version})…"):
            return await wiring.load_version(version)

    async def session() -> None:
        presenter = TerminalPresenter()
        async with SQLiteGameStore(store_path) as store:
            chosen = await store.load(game) if game else None
            uri = model or settings.model_uri("champion")
            with console.status(f"loading the storyteller ({uri})…"):
                writer = await wiring.load(uri)
            # A resumed game keeps the version that began it (loaded on demand); new games get the champion,
            # which the watcher follows while you play (unless --model fixed the model).
            writers = Writers(writer, loader=load)
            # The game on screen: its version stays loaded; the watcher unloads older champions nobody plays.
            playing: list[Game] = [chosen] if chosen is not None else []
            watcher = None if model else ChampionWatcher(writers, settings.tracking, settings.model_name,
                                                         settings.reload_seconds, wrap=wiring.wrap,
                                                         follow_challenger=False, decoding=wiring.decoding,
                                                         in_use=lambda: {g.model_version for g in playing})
            engine = await wiring.engine(writers)
            tables = Tables(engine, store, presenter, prefix=PREFIX, solo=True)
            room = Room(tables, presenter)

            async def new_game() -> Game:
                if watcher is not None:
                    await watcher.check()  # the newest champion writes the new game
                playing[:] = [await pick_game(store, room, None, None, True)]
                return playing[0]

            polling = asyncio.get_running_loop().create_task(watcher.run()) if watcher is not None else None
            try:
                current = await room.resume(chosen) if chosen else await pick_game(store, room, genre, premise, new)
                playing[:] = [current]
                await play_loop(room, new_game)
            finally:
                if polling is not None:
                    polling.cancel()
                await tables.close()

    asyncio.run(session())
