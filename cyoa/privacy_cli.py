"""``cyoa privacy forget PLAYER_ID``: the operator's way to delete a player's data (players use ``/privacy``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cyoa.settings import Settings
from data.store import SQLiteGameStore
from engine.errors import CyoaError
from engine.privacy import Forgotten

out = Console()
err = Console(stderr=True)

app = typer.Typer(no_args_is_help=True, help="Players' data: delete what a player did.")


async def forget(path: Path, player: str) -> Forgotten:
    async with SQLiteGameStore(path) as store:
        return await store.forget_player(player)


@app.command("forget")
def forget_command(
    player: Annotated[str, typer.Argument(help="The player's id: a Discord user id, or `you` for terminal games.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was deleted as JSON on stdout.")] = False,
) -> None:
    """Delete a player's votes, ratings and comments from every saved game, and the games they started; opt
    them out of training. Safe while the bot runs: its next saves leave the player's data out."""
    settings = Settings()
    if not settings.games_db.exists():
        raise CyoaError(f"{settings.games_db}: no game database yet; nothing to delete")
    forgotten = asyncio.run(forget(settings.games_db, player))
    if as_json:
        print(json.dumps({"player": player, "deleted": asdict(forgotten)}, indent=2))
        return
    out.print(f"deleted for player {player}: {forgotten.votes} vote(s), {forgotten.ratings} rating(s), "
              f"{forgotten.comments} comment(s), {forgotten.games} game(s) they started; they are opted out of "
              f"training (`/privacy optout back_in:True` lets their new play in)")
    err.print("Dataset versions already exported are not changed (they hold no player id); the next "
              "`cyoa feedback export` no longer uses what this player did.")
