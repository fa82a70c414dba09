"""The storyteller model: tokenizer, training, evaluation, registry, and the loaded model as a writer."""

from __future__ import annotations

import os

from transformers.utils import logging as _transformers_logging

# MLflow draws a progress bar for every artifact download; evaluation and loading do many small ones.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Weight loading and saving draw progress bars on stderr; cyoa shows its own progress instead.
_transformers_logging.disable_progress_bar()
