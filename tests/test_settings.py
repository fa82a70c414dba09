from __future__ import annotations

from pathlib import Path

import pytest

from cyoa.settings import Settings
from engine.errors import ConfigError


def test_local_store_lives_in_cyoa_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYOA_HOME", str(tmp_path / "state"))
    settings = Settings()
    assert settings.tracking_uri == f"sqlite:///{(tmp_path / 'state' / 'mlflow.db').resolve()}"
    assert settings.tracking.artifact_root == tmp_path / "state" / "mlartifacts"
    assert settings.datasets_dir == tmp_path / "state" / "datasets"


def test_mlflow_tracking_uri_overrides_the_local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    settings = Settings()
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.tracking.artifact_root is None


def test_a_local_tracking_database_keeps_its_artifacts_in_cyoa_home(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYOA_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    assert Settings().tracking.artifact_root == tmp_path / "state" / "mlartifacts"  # not ./mlruns


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CYOA_HOME", raising=False)
    (tmp_path / ".env").write_text("CYOA_HOME=from-dotenv\nCYOA_LOG_LEVEL=DEBUG\n")
    settings = Settings()
    assert settings.home == Path("from-dotenv") and settings.log_level == "DEBUG"


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    names = [f"CYOA_{name.upper()}" for name, field in Settings.model_fields.items()
             if not field.validation_alias] + [str(f.validation_alias) for f in Settings.model_fields.values()
                                               if f.validation_alias]
    assert all(name in example for name in names), names


def test_block_list_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYOA_BLOCK_LIST", " Gore, blood feud ,,")
    assert Settings().blocked_words == frozenset({"gore", "blood feud"})


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYOA_CHALLENGER_SHARE", "2")
    with pytest.raises(ConfigError, match="CYOA_CHALLENGER_SHARE: Input should be less than or equal to 1"):
        Settings()


def test_the_discord_token_is_a_secret_that_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.very-secret")
    settings = Settings()
    assert settings.discord_token is not None and settings.discord_token.get_secret_value() == "MTIz.very-secret"
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings.model_dump())


def test_the_bot_without_a_token_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cyoa.cli import app

    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["bot"])
    assert result.exit_code == 1
    assert "no Discord token: set DISCORD_TOKEN" in result.output and "Reset Token" in result.output
