"""The bundled anime story trees, the dataset build and its versioning, and (later) the store."""

from __future__ import annotations

from pathlib import Path

STORIES_DIR = Path(__file__).resolve().parent / "stories"
"""Where the bundled story files live (installed with the package)."""
