"""``cyoa play``: the terminal frontend. It parses what the player types, calls the engine and shows the
result; the rules are the engine's, the storage is the game store's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from cyoa.settings import Settings
from data import STORIES_DIR
from data.store import GameSummary, SQLiteGameStore
from data.validation import load_stories
from engine.checks import CheckRules
from engine.errors import CyoaError
from engine.game import Game, GameStatus, Rating
from engine.genres import GENRE_IDS, GENRES
from engine.ports import SceneWriter
from engine.queue import BatchingWriter
from engine.turns import EngineRules, Premise, StoryEngine
from engine.writers import Writers

PLACE = "terminal"
HELP = ("[bold]1-4[/] choose · [bold]r[/] retry · [bold]u[/] undo · [bold]*1-*5[/] (or [bold]4 stars[/]) rate "
        "this scene · [bold]n[/] new game · [bold]q[/] quit")
RATING = re.compile(r"[*s](\d)|(\d) ?stars?")

console = Console()


def bundled_premises(folder: Path = STORIES_DIR) -> list[Premise]:
    """The premises (and lore) of the valid bundled stories, to draw new games from."""
    stories, _ = load_stories(folder)
    return [Premise(story.genre, story.premise, story.lore) for story in stories]


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


class Draft:
    """A scene being written on demand, shown as it grows in a panel that vanishes when the checked scene is
    shown in its place (or taken back, when an attempt fails its checks and starts again)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.live = Live(self._panel(""), console=console, transient=True, refresh_per_second=15)

    def _panel(self, text: str) -> Panel:
        return Panel(text or "[dim]…[/]", title=f"[dim]{self.title}[/]")

    def __call__(self, text: str) -> None:
        self.live.update(self._panel(text))

    def __enter__(self) -> Draft:
        self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.live.stop()


async def ask(prompt: str) -> str | None:
    """Read a line on a worker thread, so pre-generation goes on while the player reads; None at end of input."""
    try:
        return (await asyncio.to_thread(input, prompt)).strip()
    except EOFError:
        return None


async def pick_game(store: SQLiteGameStore, engine: StoryEngine, genre: str | None, premise: str | None,
                    new: bool) -> Game:
    if not new and genre is None and premise is None:
        waiting = [g for g in await store.unfinished() if g.place == PLACE]
        if waiting:
            game = waiting[-1]
            console.print(f"resuming game [bold]{game.id}[/] ({game.genre}); `cyoa play --new` starts another")
            return game
    if genre is None and premise is None:
        console.print("genres: " + ", ".join(g.id for g in GENRES if any(p.genre == g.id for p in engine.premises)))
        answer = await ask("genre (Enter for any): ")
        genre = answer or None
        if genre is not None and genre not in GENRE_IDS:
            raise CyoaError(f"unknown genre {genre!r}")
        premise = await ask("premise, one sentence (Enter for one of the bundled stories'): ") or None
    with Draft("the storyteller is writing the opening…") as draft:
        return await engine.start(PLACE, genre, premise, ["you"], progress=draft)


async def persist(engine: StoryEngine, store: SQLiteGameStore, game: Game) -> None:
    """Save the game and add what the output checks counted (one model version's parse failures...)."""
    await store.save(game)
    await store.add_output_counts(engine.stats.drain())


async def play_loop(engine: StoryEngine, store: SQLiteGameStore, game: Game,
                    new_game: Callable[[], Awaitable[Game]]) -> None:
    await persist(engine, store, game)
    while True:
        show(game)
        if game.status == GameStatus.WAITING:
            engine.start_pregeneration(game)
        console.print(HELP)
        answer = await ask("> ")
        if answer is None or answer.lower() in {"q", "quit"}:
            await persist(engine, store, game)
            console.print(f"saved; `cyoa play --game {game.id}` (or just `cyoa play`) continues it")
            return
        try:
            if answer.lower() in {"n", "new"}:
                await persist(engine, store, game)
                game = await new_game()
            else:
                await apply(engine, game, answer)
        except CyoaError as exc:
            console.print(f"[red]{exc}[/]")
        await persist(engine, store, game)


async def apply(engine: StoryEngine, game: Game, answer: str) -> None:
    """One command from the player."""
    lowered = answer.lower()
    if lowered in {"r", "retry"}:
        with Draft("writing this scene again…") as draft:
            await engine.retry(game, draft)
    elif lowered in {"u", "undo"}:
        await engine.undo(game)
    elif (rating := RATING.fullmatch(lowered)) is not None:
        stars = int(rating.group(1) or rating.group(2))
        if not 1 <= stars <= 5:
            raise CyoaError("a rating is *1 to *5")
        game.ratings.append(Rating(player="you", scene=len(game.path) - 1, stars=stars,
                                   model_version=game.current.scene.model_version))
        console.print(f"rated scene {len(game.path)}: {'★' * stars}")
    elif answer.isdigit():
        with Draft("the storyteller is writing…") as draft:
            await engine.choose(game, int(answer) - 1, draft)
    else:
        raise CyoaError(f"{answer!r}? {HELP}")


def list_games(store_path: Path) -> None:
    async def fetch() -> list[GameSummary]:
        async with SQLiteGameStore(store_path) as store:
            return await store.list_games(PLACE)

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
    from models.reload import ChampionWatcher
    from models.writer import ModelWriter  # imported here: torch and MLflow take seconds to import

    settings = Settings()
    store_path = settings.games_db
    if listing:
        list_games(store_path)
        return

    decoding = settings.decoding()

    def wrap(writer: SceneWriter) -> SceneWriter:
        # A scene's branches are separate requests, most voted first: the queue batches them into one call.
        return BatchingWriter(writer, max_batch=settings.decoder_slots, deadline_seconds=settings.write_deadline)

    async def load(version: str) -> SceneWriter:
        with console.status(f"loading the storyteller ({version})…"):
            return wrap(await ModelWriter.load(settings.tracking, f"models:/{version}", decoding))

    async def session() -> None:
        async with SQLiteGameStore(store_path) as store:
            chosen = await store.load(game) if game else None
            uri = model or settings.model_uri("champion")
            with console.status(f"loading the storyteller ({uri})…"):
                writer = wrap(await ModelWriter.load(settings.tracking, uri, decoding))
            # A resumed game keeps the version that began it (loaded on demand); new games get the champion,
            # which the watcher follows while you play (unless --model fixed the model).
            writers = Writers(writer, loader=load)
            # The game on screen: its version stays loaded; the watcher unloads older champions nobody plays.
            playing: list[Game] = [chosen] if chosen is not None else []
            watcher = None if model else ChampionWatcher(writers, settings.tracking, settings.model_name,
                                                         settings.reload_seconds, wrap=wrap,
                                                         follow_challenger=False, decoding=decoding,
                                                         in_use=lambda: {g.model_version for g in playing})
            rules = EngineRules(checks=CheckRules(block_list=settings.blocked_words))
            # Reading and validating 64 story files is file I/O: off the event loop.
            engine = StoryEngine(writers, rules, premises=await asyncio.to_thread(bundled_premises))

            async def new_game() -> Game:
                if watcher is not None:
                    await watcher.check()  # the newest champion writes the new game
                playing[:] = [await pick_game(store, engine, None, None, True)]
                return playing[0]

            polling = asyncio.get_running_loop().create_task(watcher.run()) if watcher is not None else None
            try:
                current = chosen or await pick_game(store, engine, genre, premise, new)
                playing[:] = [current]
                await play_loop(engine, store, current, new_game)
            finally:
                if polling is not None:
                    polling.cancel()

    asyncio.run(session())
