"""The model registry: logging a storyteller, registering versions, aliases, and loading by URI.

Registry stages are deprecated in MLflow, so the project uses aliases: ``challenger`` is set by training,
``champion`` by ``cyoa promote``. A model URI is ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
``runs:/<run id>/model`` or a local storyteller folder. A version is logged as a pyfunc model (for MLflow's
tools) but loaded as data: its storyteller folder, never the Python its artifact carries (``load_storyteller``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import pandas as pd
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from data.tracking import TrackingTarget
from engine.errors import ModelLoadError, ModelNotFoundError, TrackingError
from engine.prompt_format import PROMPT_FORMAT_VERSION, StoryContext, render_prompt
from models import pyfunc_entry
from models.evaluation import EvalReport, flat_metrics, samples_table
from models.pretrained import BASES
from models.storyteller import ADAPTER_DIR, Card, Storyteller

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
PYFUNC_FLAVOR = "python_function"
STORYTELLER_ARTIFACT = "storyteller"  # the pyfunc artifact that holds the storyteller folder
STORYTELLER_PATH = f"artifacts/{STORYTELLER_ARTIFACT}"  # where MLflow puts it inside the logged model


def pip_requirements(card: Card | None = None) -> list[str]:
    """Pinned explicitly: MLflow's inference of requirements imports optional packages and fails. An adapter
    over a named base needs peft and the base's package too (installed with --no-deps; see the README)."""
    from importlib.metadata import version

    names = ["torch", "transformers", "tokenizers", "mlflow", "pandas", "peft"]
    if card is not None and card.base is not None and card.base.name in BASES:
        names += ["gguf", "accelerate"]
        base = BASES[card.base.name]
        return [*(f"{name}=={version(name)}" for name in names), f"{base.package}=={base.version}"]
    return [f"{name}=={version(name)}" for name in names]


def signature() -> ModelSignature:
    return ModelSignature(inputs=Schema([ColSpec("string", "prompt")]), outputs=Schema([ColSpec("string")]),
                          params=ParamSchema([ParamSpec("seed", "long", None)]))


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str


def log_storyteller(folder: Path, card: Card, name: str, extra_metadata: dict[str, object] | None = None) -> Registered:
    """Log the storyteller folder to the active run as a pyfunc model and register a new version."""
    example = pd.DataFrame({"prompt": [render_prompt(StoryContext("fantasy", "A dragon wakes under the school."))]})
    metadata = {"prompt_format_version": card.prompt_format_version, "family": card.family,
                "preset": card.config.preset, "dataset_digest": card.dataset_digest,
                "sampling": card.config.sampling.__dict__, "train_config": card.config.to_dict(),
                "base": card.base.to_dict() if card.base else None, **(extra_metadata or {})}
    try:
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=str(Path(pyfunc_entry.__file__)),
            artifacts={STORYTELLER_ARTIFACT: str(folder)}, pip_requirements=pip_requirements(card),
            signature=signature(),
            input_example=example, metadata=metadata, registered_model_name=name,
        )
        version = str(info.registered_model_version)
        client = MlflowClient()
        tags: list[tuple[str, object]] = [("prompt_format_version", card.prompt_format_version),
                                          ("dataset_digest", card.dataset_digest), ("preset", card.config.preset)]
        if card.base is not None:
            tags += [*card.base.as_params().items(), ("adapter", (folder / ADAPTER_DIR).is_dir())]
        for key, value in tags:
            client.set_model_version_tag(name, version, f"cyoa.{key}", str(value))
    except MlflowException as exc:
        raise TrackingError(f"cannot log or register the model {name}: {exc.message}") from exc
    return Registered(name, version, str(info.run_id))


def set_alias(target: TrackingTarget, name: str, alias: str, version: str) -> None:
    target.activate()
    try:
        MlflowClient().set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        raise TrackingError(f"cannot set alias {alias} on {name} version {version}: {exc.message}") from exc


def version_by_alias(target: TrackingTarget, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, ``None`` if the model or the alias does not exist."""
    target.activate()
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def resolve(target: TrackingTarget, uri: str) -> tuple[str, ModelVersion | None]:
    """The URI to load and the registered version behind it (``None`` for runs:/ URIs and folders).

    Errors say what to run: a missing model means train one, a missing alias means promote one.
    """
    if not uri.startswith("models:/"):
        return uri, None
    target.activate()
    client = MlflowClient()
    spec = uri.removeprefix("models:/")
    name, alias, number = spec, None, None
    if "@" in spec:
        name, alias = spec.split("@", 1)
    elif "/" in spec:
        name, number = spec.split("/", 1)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise ModelNotFoundError(f"no registered model {name!r} in {target.uri}: train one with "
                                 f"`cyoa train` (or `make play` to bootstrap the starter model)") from exc
    try:
        version = (client.get_model_version_by_alias(name, alias) if alias is not None
                   else client.get_model_version(name, str(number)))
    except MlflowException as exc:
        aliases = sorted(client.get_registered_model(name).aliases)
        if alias == CHAMPION:
            hint = "promote a version with `cyoa promote`"
        elif alias == CHALLENGER:
            hint = "train one with `cyoa train`"
        else:
            hint = f"use one of its aliases ({', '.join(aliases) or 'none yet'}) or a version number"
        what = f"alias {alias!r}" if alias is not None else f"version {number}"
        raise ModelNotFoundError(f"model {name} has no {what}: {hint}") from exc
    return f"models:/{name}/{version.version}", version


def load_storyteller(target: TrackingTarget, uri: str) -> Storyteller:
    """Load a storyteller by model URI (or from a local folder), from local files only.

    A registered version is loaded from its files as data, never through ``mlflow.pyfunc.load_model``: that
    runs the Python the artifact carries (the model-from-code file, or a pickled ``python_model``), and the bot
    loads whatever ``@champion`` and ``@challenger`` point at, so anyone who can set an alias on a shared MLflow
    server could run code next to ``DISCORD_TOKEN``. Only the storyteller folder is read: JSON, the tokenizer's
    JSON, and weights in safetensors (``Storyteller.load``).
    """
    if Path(uri).is_dir():
        return Storyteller.load(Path(uri))
    resolved, version = resolve(target, uri)
    label = f"{version.name}/{version.version}" if version is not None else uri
    if version is not None:
        found = (version.tags or {}).get("cyoa.prompt_format_version")
        if found is not None and found != str(PROMPT_FORMAT_VERSION):
            raise ModelLoadError(
                f"model {label} was trained with prompt format {found}, but this cyoa speaks format "
                f"{PROMPT_FORMAT_VERSION}: retrain it with `cyoa train`, or run the cyoa release that trained it")
    target.activate()
    hint = "retrain with `cyoa train` or point the alias at another version"
    try:
        folder = _storyteller_folder(resolved)
    except ModelLoadError as exc:
        raise ModelLoadError(f"model {label}: {exc}") from exc
    except MlflowException as exc:
        raise ModelLoadError(f"model {label}: cannot load its artifacts ({exc.message}); {hint}") from exc
    except Exception as exc:  # a malformed MLmodel file surfaces as a YAML, key or type error
        raise ModelLoadError(f"model {label}: its MLmodel file is unreadable ({type(exc).__name__}: {exc}); "
                             f"{hint}") from exc
    try:
        return Storyteller.load(folder, version=label)
    except ModelLoadError as exc:  # a bad storyteller folder: corrupt, another format, its base missing
        raise ModelLoadError(f"model {label}: {exc}") from exc


def _storyteller_folder(model_uri: str) -> Path:
    """The local storyteller folder of a logged model (``models:/<name>/<n>``, ``runs:/...``), downloaded through
    MLflow's artifact API: a local store's files are used in place, a server's are copied to a temporary folder.

    Where the folder lies inside the model comes from its ``MLmodel`` file, read as YAML data (``safe_load``).
    """
    mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri}/MLmodel")
    flavor = Model.load(mlmodel).flavors.get(PYFUNC_FLAVOR, {})
    entry = (flavor.get("artifacts") or {}).get(STORYTELLER_ARTIFACT) or {}
    relative = PurePosixPath(str(entry.get("path", STORYTELLER_PATH)))
    if relative.is_absolute() or ".." in relative.parts:  # the MLmodel file must not point outside the model
        raise ModelLoadError(f"its MLmodel file points the storyteller at {relative}, outside the model; retrain "
                             "with `cyoa train` or point the alias at another version")
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri}/{relative}"))


def log_evaluation(target: TrackingTarget, report: EvalReport, prefix: str, data_digest: str) -> str | None:
    """Log an evaluation's metrics and sample table on the run that produced the evaluated model version.

    Returns that run's id, or ``None`` when the model is not a registered version (nothing is logged then).
    """
    name, _, number = report.model.partition("/")
    if not number.isdigit():
        return None
    target.activate()
    client = MlflowClient()
    try:
        run_id = str(client.get_model_version(name, number).run_id)
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in flat_metrics(report, prefix).items()]
        for start in range(0, len(metrics), 500):  # log_batch takes at most 1000 entries
            client.log_batch(run_id, metrics=metrics[start:start + 500])
        client.set_tag(run_id, f"cyoa.eval.{prefix}.data_digest", data_digest)
        if report.samples:
            mlflow.log_table(samples_table(report), artifact_file=f"evaluation/{prefix}_samples.json", run_id=run_id)
    except MlflowException as exc:
        raise TrackingError(f"cannot log the evaluation of {report.model}: {exc.message}") from exc
    return run_id


def set_version_tag(target: TrackingTarget, name: str, version: str, key: str, value: str) -> None:
    target.activate()
    try:
        MlflowClient().set_model_version_tag(name, version, key, value)
    except MlflowException as exc:
        raise TrackingError(f"cannot tag {name} version {version}: {exc.message}") from exc
