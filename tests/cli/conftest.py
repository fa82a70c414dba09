from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data import STORIES_DIR


@pytest.fixture
def few_stories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Twelve bundled stories, one per genre, so the CLI builds and trains on a small dataset."""
    folder = tmp_path / "stories"
    folder.mkdir()
    seen: set[str] = set()
    for path in sorted(STORIES_DIR.glob("*.json")):
        genre = json.loads(path.read_text())["genre"]
        if genre not in seen and len(seen) < 12:
            seen.add(genre)
            shutil.copy(path, folder)
    monkeypatch.setenv("CYOA_STORIES_DIR", str(folder))
    return folder
