"""``cyoa report``: the live figures of every model version from the game store, shown and logged to MLflow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cyoa.settings import Settings
from data.store import SQLiteGameStore
from models.live_report import LiveReport, VersionFigures, live_report

out = Console()
err = Console(stderr=True)


def read_live_report(path: Path) -> LiveReport:
    """The live figures of the games in the store at ``path``; none when it does not exist yet (a report must
    not create an empty database as a side effect)."""
    if not path.exists():
        return {}

    async def fetch() -> LiveReport:
        async with SQLiteGameStore(path) as store:
            # Opted-out players' ratings and votes are left out, as the harvest leaves them out.
            return live_report(await store.all_games(), await store.output_counts(), await store.opted_out())

    return asyncio.run(fetch())


def _mean(value: float | None, count: int) -> str:
    return f"{value:.2f} ({count})" if value is not None else "-"


def summary_table(report: LiveReport) -> Table:
    """One row per figure, one column per version (many figures, few versions: fits a terminal)."""
    columns = {version: figures.metrics() for version, figures in report.items()}
    names = list(dict.fromkeys(name for metrics in columns.values() for name in metrics))
    table = Table("figure", *columns, title="live figures per model version")
    for name in names:
        table.add_row(name.replace("_", " "), *(_number(metrics.get(name)) for metrics in columns.values()))
    return table


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def genre_table(figures: VersionFigures) -> Table:
    table = Table("genre", "games", "scenes", "stars (n)", "👍 / 👎", "vote margin (n)", "ties", "repaired",
                  title=f"{figures.version} per genre")
    for genre, f in sorted(figures.per_genre.items()):
        table.add_row(genre.replace("_", " "), str(f.games), str(f.scenes), _mean(f.mean_rating, f.star_ratings),
                      f"{f.thumbs_up} / {f.thumbs_down}", _mean(f.mean_vote_margin, f.closed_votes),
                      str(f.tie_breaks), str(f.repaired_scenes))
    return table


def _as_json(figures: VersionFigures, run_id: str | None, note: str | None) -> dict[str, Any]:
    return {"metrics": figures.metrics(),
            "per_genre": {genre: f.metrics() for genre, f in sorted(figures.per_genre.items())},
            "output_counts": figures.outputs, "run_id": run_id, "logged": run_id is not None, "note": note}


def report(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")] = False,
    no_log: Annotated[bool, typer.Option("--no-log", help="Show the figures only; log nothing to MLflow.")] = False,
) -> None:
    """Live figures per model version and genre (games, ratings, thumbs, vote margins, parse failures, repairs),
    logged as `live_*` metrics and a plot on the MLflow run of each registered version."""
    settings = Settings()
    path = settings.games_db
    live = read_live_report(path)
    if not live:
        err.print(f"no games in {path} yet: play with `cyoa play` (or the Discord bot), then report")
    logged: dict[str, tuple[str | None, str | None]] = {}
    if not no_log and live:
        from models.live_tracking import PLOT_ARTIFACT, log_live  # imported here: MLflow takes seconds to import

        for version, figures in live.items():
            run_id = log_live(settings.tracking, figures)
            note = (f"logged on MLflow run {run_id} (live_* metrics, {PLOT_ARTIFACT})" if run_id is not None else
                    "not a registered model version (a fake writer, a folder or an unknown version): shown, "
                    "not logged")
            logged[version] = (run_id, note)
    if as_json:
        versions = {version: _as_json(figures, *logged.get(version, (None, None))) for version, figures in live.items()}
        print(json.dumps({"store": str(path), "versions": versions}, indent=2))
        return
    if live:
        out.print(summary_table(live))
    for figures in live.values():
        if figures.per_genre:
            out.print(genre_table(figures))
    for version, (_, logged_note) in logged.items():
        out.print(f"{version}: {logged_note}")
