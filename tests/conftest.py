from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

PUBLIC_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "public"


@pytest.fixture(scope="session")
def _shared_bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of converted pretrained bases for the whole run: converting SmolLM2 takes half a minute."""
    return tmp_path_factory.mktemp("bases")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _shared_bases: Path) -> Iterator[Path]:
    """Every test writes its state (MLflow store, datasets) under its own temporary CYOA_HOME."""
    from models.pretrained import set_cache_dir

    home = tmp_path / "cyoa-home"
    monkeypatch.setenv("CYOA_HOME", str(home))
    monkeypatch.setenv("CYOA_BASES_DIR", str(_shared_bases))
    set_cache_dir(None)  # a CLI command run in-process earlier set it to that test's home
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture
def public_data() -> Path:
    if not (PUBLIC_DATA / "SOURCES.md").exists():
        pytest.skip(f"the shared public data is not at {PUBLIC_DATA}")
    return PUBLIC_DATA
