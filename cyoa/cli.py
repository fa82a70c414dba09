"""The ``cyoa`` command line. Commands parse options, call the packages and render the results."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperGroup

from cyoa import __version__, feedback_cli, model_cli, privacy_cli, report_cli
from cyoa import play as play_cli
from cyoa.settings import Settings
from data.build import SPLITS, BuildOptions
from data.issues import ValidationIssue
from data.sources import SOURCE_NAMES
from data.steps import read_steps
from data.validation import validate_story_file
from engine.errors import CyoaError

out = Console()
err = Console(stderr=True)


class CyoaGroup(TyperGroup):
    """The one place that turns an expected error into a message and exit code 1 (and no traceback)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context; typer does not export its type
        try:
            return super().invoke(ctx)
        except CyoaError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(cls=CyoaGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Anime choose-your-own-adventure stories: dataset, model and Discord bot.")
data_app = typer.Typer(cls=CyoaGroup, no_args_is_help=True, help="Validate and build the story dataset.")
app.add_typer(data_app, name="data")
app.add_typer(feedback_cli.app, name="feedback")
app.add_typer(privacy_cli.app, name="privacy")
app.command()(model_cli.train)
app.command()(model_cli.evaluate)
app.command()(model_cli.promote)
app.command()(model_cli.bootstrap)
app.command()(play_cli.play)
app.command()(report_cli.report)


@app.command("bot")
def bot_command() -> None:
    """Run the Discord bot (DISCORD_TOKEN from the environment or .env) until stopped with Ctrl-C."""
    from cyoa.wiring import bot_main  # discord.py, torch and MLflow load only when the bot runs

    bot_main()


@app.command("web")
def web_command(
    host: Annotated[str, typer.Option(help="Address to listen on. The default serves this machine only; "
                                      "0.0.0.0 serves every network it is on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the game in the browser and its JSON API (http://HOST:PORT, the API schema at /docs) until stopped."""
    from cyoa.wiring import web_main  # uvicorn, torch and MLflow load only when the server runs

    web_main(host, port)


@app.command("serve")
def serve_command(
    bot: Annotated[bool, typer.Option("--bot/--no-bot", help="Run the Discord bot (DISCORD_TOKEN).")] = True,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve the browser game and its API.")] = True,
    host: Annotated[str, typer.Option(help="Address to listen on (the web, /health and /metrics). The default "
                                      "serves this machine only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the service: the Discord bot and the web game over one engine and one model, with /health and
    /metrics (Prometheus), until SIGTERM or Ctrl-C; every game is saved and resumes at the next start."""
    if not bot and not web:
        raise typer.BadParameter("nothing to run: --no-bot and --no-web together leave no frontend")
    from cyoa.wiring import serve_main

    serve_main(bot, web, host, port)


def _version(value: bool) -> None:
    if value:
        out.print(f"cyoa {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from models.pretrained import set_cache_dir

    settings = Settings()
    set_cache_dir(settings.bases)  # pretrained bases are converted once, into the state directory
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)
    # MLflow and alembic are chatty at INFO; their warnings still show.
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _validate_path(path: Path) -> tuple[int, list[ValidationIssue]]:
    """Checks a story file (``.json``) or a step file (``.jsonl``); returns (items checked, issues)."""
    if path.suffix == ".jsonl":
        steps, issues = read_steps(path)
        return len(steps), issues
    if path.suffix != ".json":
        return 0, [ValidationIssue(str(path), "not a story file (.json) or a step file (.jsonl)")]
    report = validate_story_file(path)
    return (1 if report.story else 0), report.issues


@data_app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Story files (.json), step files (.jsonl) or folders. "
                                                       "Default: the bundled stories.")] = None,
) -> None:
    """Check story and step files; print every problem with its location. Exit 1 on any problem."""
    targets = paths or [Settings().stories_dir]
    missing = [path for path in targets if not path.exists()]
    for path in missing:
        typer.echo(f"{path}: no such file or folder")
    files: list[Path] = []
    for target in targets:
        if target.is_dir():
            files.extend(sorted([*target.rglob("*.json"), *target.rglob("*.jsonl")]))
        elif target.exists():
            files.append(target)
    problems = len(missing)
    for path in files:
        _, issues = _validate_path(path)
        for issue in issues:
            typer.echo(str(issue))
        problems += len(issues)
    if problems:
        err.print(f"[red]{problems} problem(s)[/] in {len(files)} file(s)")
        raise typer.Exit(1)
    err.print(f"[green]all {len(files)} file(s) valid[/]")


def _stats_table(stats: dict[str, Any]) -> Table:
    table = Table("statistic", "value", title="dataset")
    for key, value in stats.items():
        table.add_row(key, str(value))
    return table


@data_app.command("build")
def build(
    source: Annotated[list[str] | None, typer.Option("--source", "-s", help=f"Add an extra source: "
                                                     f"{', '.join(SOURCE_NAMES)} (repeatable).")] = None,
    stories: Annotated[Path | None, typer.Option(help="Folder of story files (default: the bundled stories).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split by story.")] = BuildOptions.seed,
    validation_fraction: Annotated[
        float, typer.Option(help="Share of stories in validation.")
    ] = BuildOptions.validation_fraction,
    test_fraction: Annotated[float, typer.Option(help="Share of stories in test.")] = BuildOptions.test_fraction,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON on stdout.")] = False,
) -> None:
    """Turn the story trees into train/validation/test steps and log the version to MLflow."""
    settings = Settings()
    unknown = sorted(set(source or []) - set(SOURCE_NAMES))
    if unknown:
        raise typer.BadParameter(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCE_NAMES)}",
                                 param_hint="--source")
    try:
        options = BuildOptions(seed, validation_fraction, test_fraction)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--validation-fraction/--test-fraction") from exc
    # Imported here: MLflow takes seconds to import, and validate does not need it.
    from data.dataset_job import build_dataset_version

    built = build_dataset_version(stories or settings.stories_dir, source or [], settings.public_data_dir, options,
                                  settings.datasets_dir, settings.tracking)
    result, run_id, written = built.build, built.run_id, built.folder
    summary = {"digest": result.digest, "run_id": run_id, "path": str(written), **result.stats,
               "split_digests": {split: result.split_digest(split) for split in SPLITS}}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    err.print(_stats_table(result.stats))
    out.print(f"dataset digest [bold]{result.digest}[/]  MLflow run [bold]{run_id}[/]  written to {written}")
