"""Model-from-code entry point that MLflow executes when it logs a storyteller, or when someone loads one with
``mlflow.pyfunc`` (no pickling). A copy travels in each artifact; cyoa's own loading never runs it."""

from __future__ import annotations

from mlflow.models import set_model

from models.pyfunc import StorytellerModel

set_model(StorytellerModel())
