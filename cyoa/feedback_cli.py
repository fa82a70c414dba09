"""``cyoa feedback export``: harvest the saved games into a new dataset version (train steps and preferences)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cyoa.settings import Settings
from data.feedback import FeedbackOptions

out = Console()
err = Console(stderr=True)

app = typer.Typer(no_args_is_help=True, help="Turn play (votes, retries, ratings) into training data.")


def counts_table(counts: dict[str, int]) -> Table:
    """Candidates, kept and dropped per filter, for steps and for preference pairs."""
    table = Table("what", "count", title="feedback harvest")
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), str(value))
    return table


@app.command("export")
def export(
    min_rating: Annotated[float, typer.Option(help="Mean stars below this drop a scene (1-5).")] = 3.0,
    min_supporters: Annotated[int, typer.Option(
        min=0, help="Distinct players whose thumbs up (or star) a scene needs to be learned; 1 suits a "
                    "single-owner terminal setup, 0 turns the rule off.")] = FeedbackOptions.min_supporters,
    max_player_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Most of the harvested steps (and pairs) one player's votes and ratings may "
                               "decide; 1 turns the cap off.")] = FeedbackOptions.max_player_share,
    player_cap_floor: Annotated[int, typer.Option(
        min=0, help="Steps (and pairs) any player may decide whatever the share.")] = FeedbackOptions.player_cap_floor,
    text_checks: Annotated[bool, typer.Option(
        help="Drop scenes that are cut off, loop or are garbled (invented words). Turn off only for a model "
             "that writes no English yet (the tests' tiny one).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Harvest every saved game onto the latest dataset and log the new version to MLflow (`cyoa-data`)."""
    from cyoa.model_cli import dataset_version
    from data.feedback_job import export_feedback, read_games

    if not 1 <= min_rating <= 5:
        raise typer.BadParameter(f"{min_rating:g} is not a star rating; give 1-5", param_hint="--min-rating")
    settings = Settings()
    options = FeedbackOptions(min_rating=min_rating, block_list=settings.blocked_words, min_supporters=min_supporters,
                              max_player_share=max_player_share, player_cap_floor=player_cap_floor,
                              text_checks=text_checks)
    games, opted_out = asyncio.run(read_games(settings.games_db))
    latest = dataset_version(settings, "latest")
    result = export_feedback(games, opted_out, latest, options, settings.datasets_dir, settings.tracking)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    err.print(counts_table(result.counts))
    if result.digest is None:
        out.print(f"nothing to export: no scene or pair of {len(games)} game(s) passed the filters; "
                  f"dataset {result.parent} stays the latest")
    elif not result.created:
        out.print(f"unchanged: dataset [bold]{result.digest}[/] (parent {result.parent}) already holds this play "
                  f"(MLflow run {result.run_id}); no new version")
    else:
        out.print(f"dataset digest [bold]{result.digest}[/]  parent [bold]{result.parent}[/]  "
                  f"+{result.counts['steps_kept']} train steps, {result.counts['pairs_kept']} preference pairs  "
                  f"MLflow run [bold]{result.run_id}[/]  written to {result.folder}")
