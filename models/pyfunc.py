"""The MLflow pyfunc wrapper around a storyteller folder.

Why pyfunc and not the ``mlflow.transformers`` flavour: transformers 5 has no ``text2text-generation``
pipeline, so the flavour cannot log the T5/BART models that ``--base-model`` fine-tunes; and the engine needs
the model, tokenizer, prompt-format version and sampling preset together to batch ``generate`` calls itself.
One flavour for both families keeps loading identical: the storyteller folder travels as the artifact
``storyteller`` and loads from local files only.

cyoa itself never loads a version through this class: ``models.registry.load_storyteller`` reads the artifact's
storyteller folder as data, since ``mlflow.pyfunc.load_model`` runs the code the artifact carries. The class is
there for MLflow: validating the input example when a version is logged, and ``mlflow.pyfunc.load_model`` /
``mlflow models serve`` for whoever trusts a version's artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.pyfunc.model import PythonModel

from models.storyteller import Storyteller


class StorytellerModel(PythonModel):
    """``predict`` takes a DataFrame with a ``prompt`` column (rendered prompts) and returns the answers."""

    storyteller: Storyteller
    # The signature is logged explicitly; without this MLflow reads predict's ``Any`` hints as a schema and warns.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.storyteller = Storyteller.load(Path(context.artifacts["storyteller"]))

    # No type hints: MLflow reads predict's hints as an input schema and warns that ``Any`` gives none; the
    # signature is logged explicitly instead (models.registry.signature).
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        prompts = [str(p) for p in model_input["prompt"]]
        seed = (params or {}).get("seed")
        return self.storyteller.generate_from_text(prompts, seed=int(seed) if seed is not None else None)
