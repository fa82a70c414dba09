from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
import torch
from mlflow.tracking import MlflowClient

from data.tracking import TrackingTarget
from engine.errors import ModelLoadError, ModelNotFoundError
from models.registry import load_storyteller, log_storyteller
from models.storyteller import Storyteller
from models.train_job import TrainOutcome
from tests.models.conftest import MODEL

LOAD_AND_WRITE = """
import json, sys
from data.tracking import TrackingTarget
from engine.prompt_format import StoryContext, Turn
from models.registry import load_storyteller
storyteller = load_storyteller(TrackingTarget(sys.argv[1]), sys.argv[2])
contexts = [StoryContext("mecha", "A pilot wakes.", ("Aoi-senpai leads.",), "", (Turn("The hangar hums.", "Run"),)),
            StoryContext("idol", "A trainee debuts.")]
print(json.dumps({"version": storyteller.version, "texts": storyteller.write(contexts, seed=7)}))
"""


def test_load_by_alias_in_a_fresh_offline_process(trained: TrainOutcome, tracking: TrackingTarget) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", LOAD_AND_WRITE, tracking.uri, f"models:/{MODEL}@challenger"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["version"] == f"{MODEL}/1"
    assert len(answer["texts"]) == 2 and all(isinstance(t, str) and t for t in answer["texts"])


def test_same_seed_same_text(trained: TrainOutcome, tracking: TrackingTarget) -> None:
    from engine.prompt_format import StoryContext

    storyteller = load_storyteller(tracking, f"models:/{MODEL}/1")
    context = [StoryContext("fantasy", "A dragon wakes.")]
    assert storyteller.write(context, seed=3) == storyteller.write(context, seed=3)


def test_missing_model_says_to_train(tracking: TrackingTarget) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no registered model 'nobody' .*`cyoa train`"):
        load_storyteller(tracking, "models:/nobody@champion")


def test_unknown_alias_says_what_exists(trained: TrainOutcome, tracking: TrackingTarget) -> None:
    with pytest.raises(ModelNotFoundError, match=r"has no alias 'nope': use one of its aliases \(.*challenger"):
        load_storyteller(tracking, f"models:/{MODEL}@nope")
    with pytest.raises(ModelNotFoundError, match="has no version 99"):
        load_storyteller(tracking, f"models:/{MODEL}/99")


def test_no_champion_says_to_promote(trained: TrainOutcome, tracking: TrackingTarget,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("fresh")
    fresh = TrackingTarget(f"sqlite:///{home / 'mlflow.db'}", home / "art")
    _register_copy(trained.checkpoint, fresh, "other", home / "copy")
    with pytest.raises(ModelNotFoundError, match="has no alias 'champion': promote a version with `cyoa promote`"):
        load_storyteller(fresh, "models:/other@champion")


def _register_copy(checkpoint: Path, target: TrackingTarget, name: str, folder: Path,
                   format_version: int | None = None) -> str:
    shutil.copytree(checkpoint, folder)
    card = Storyteller.load(folder).card
    if format_version is not None:
        card = replace(card, prompt_format_version=format_version)
        (folder / "storyteller.json").write_text(card.to_json())
    experiment = target.experiment_id("tests")
    with mlflow.start_run(experiment_id=experiment):
        return log_storyteller(folder, card, name).version


def test_corrupt_artifact_is_a_clear_error(trained: TrainOutcome, tracking: TrackingTarget, tmp_path: Path) -> None:
    version = _register_copy(trained.checkpoint, tracking, "corrupt-me", tmp_path / "copy")
    client = MlflowClient(tracking.uri)
    run = client.get_run(client.get_model_version("corrupt-me", version).run_id)
    # The local store keeps logged models under the artifact root; damage every copy of the weights there.
    weights = list(Path(tracking.artifact_root or ".").rglob("model.safetensors"))
    damaged = [path for path in weights if _belongs_to(path, run.info.run_id, client, tracking)]
    assert damaged
    for path in damaged:
        path.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ModelLoadError, match=r"corrupt-me/\d+: .*corrupt"):
        load_storyteller(tracking, f"models:/corrupt-me/{version}")


def _belongs_to(path: Path, run_id: str, client: MlflowClient, tracking: TrackingTarget) -> bool:
    """Is this weights file part of a model logged by that run? (MLflow 3 stores logged models apart.)"""
    return any(model.source_run_id == run_id and str(path).startswith(model.artifact_location.removeprefix("file://"))
               for model in client.search_logged_models(experiment_ids=[tracking.experiment_id("tests")]))


def test_wrong_prompt_format_is_refused(trained: TrainOutcome, tracking: TrackingTarget, tmp_path: Path) -> None:
    version = _register_copy(trained.checkpoint, tracking, "old-format", tmp_path / "copy", format_version=99)
    with pytest.raises(ModelLoadError, match="trained with prompt format 99, but this cyoa speaks format 1"):
        load_storyteller(tracking, f"models:/old-format/{version}")
    with pytest.raises(ModelLoadError, match="prompt format 99"):
        Storyteller.load(tmp_path / "copy")


PLANTED_CODE = "open({marker!r}, 'w').write('ran')\nraise RuntimeError('planted code ran')\n"


class _Planted:
    """Unpickles by running code: what a tampered ``python_model.pkl`` can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (PLANTED_CODE.format(marker=str(self.marker)),)


def _plant(model_dir: Path, marker: Path, kind: str) -> None:
    """Make the logged model run code when MLflow's pyfunc loader opens it: its model-from-code file rewritten,
    or (``pickle``) the MLmodel file switched to a pickled ``python_model`` that runs code when unpickled."""
    [entry] = model_dir.glob("pyfunc_entry.py")
    if kind == "code":
        entry.write_text(PLANTED_CODE.format(marker=str(marker)))
        return
    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    mlmodel = model_dir / "MLmodel"
    text = mlmodel.read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in text and "model_code_path:" in text
    text = text.replace("loader_module: mlflow.pyfunc.loaders.code_model", "loader_module: mlflow.pyfunc.model")
    mlmodel.write_text(re.sub(r"model_code_path: .*", "python_model: python_model.pkl", text))


@pytest.mark.parametrize("kind", ["code", "pickle"])
def test_a_version_that_carries_code_loads_its_weights_without_running_it(
        trained: TrainOutcome, tracking: TrackingTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    name = f"planted-{kind}"
    version = _register_copy(trained.checkpoint, tracking, name, tmp_path / "copy")
    model_dir = Path(MlflowClient(tracking.uri).get_model_version_download_uri(name, version).removeprefix("file://"))
    marker = tmp_path / "ran"
    _plant(model_dir, marker, kind)
    # The planted code is live: MLflow's own loader runs it (pickles too, once someone allows them).
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    tracking.activate()
    with pytest.raises(Exception, match="planted code ran"):
        mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    assert marker.read_text() == "ran"
    marker.unlink()

    storyteller = load_storyteller(tracking, f"models:/{name}/{version}")
    assert not marker.exists()
    assert storyteller.version == f"{name}/{version}"
    original = Storyteller.load(trained.checkpoint)
    for mine, theirs in zip(storyteller.model.state_dict().values(), original.model.state_dict().values(),
                            strict=True):
        assert torch.equal(mine, theirs)  # the version's own weights, read as data


def test_pickled_weights_are_refused(trained: TrainOutcome, tmp_path: Path) -> None:
    folder = shutil.copytree(trained.checkpoint, tmp_path / "copy")
    [weights] = (folder / "model").glob("*.safetensors")
    weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(ModelLoadError, match="no weights in safetensors format"):
        Storyteller.load(folder)
