from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

PUBLIC_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "public"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test writes its state (MLflow store, datasets) under its own temporary CYOA_HOME."""
    home = tmp_path / "cyoa-home"
    monkeypatch.setenv("CYOA_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture
def public_data() -> Path:
    if not (PUBLIC_DATA / "SOURCES.md").exists():
        pytest.skip(f"the shared public data is not at {PUBLIC_DATA}")
    return PUBLIC_DATA
