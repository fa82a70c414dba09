"""The storyteller model: tokenizer, training, evaluation, registry, and the loaded model as a writer."""

import os
import warnings

from transformers.utils import logging as _transformers_logging

# MLflow draws a progress bar for every artifact download; evaluation and loading do many small ones.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Weight loading and saving draw progress bars on stderr; cyoa shows its own progress instead.
_transformers_logging.disable_progress_bar()

# The logged model has an explicit signature; MLflow still tries to infer one from predict's type hints.
warnings.filterwarnings("ignore", message=r".*Failed to infer signature from type hint")
