"""Model-from-code entry point that MLflow executes when it logs or loads a storyteller (no pickling)."""

from __future__ import annotations

from mlflow.models import set_model

from models.pyfunc import StorytellerModel

set_model(StorytellerModel())
