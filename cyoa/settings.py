"""Settings, read from the environment and ``.env`` (see ``.env.example`` for each one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from data import STORIES_DIR
from data.tracking import TrackingTarget
from engine.errors import ConfigError

if TYPE_CHECKING:
    from models.fast_job import Decoding

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CYOA_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    home: Path = Field(default=Path(".cyoa"), description="state directory: databases, MLflow store, datasets")
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias="MLFLOW_TRACKING_URI",
        description="overrides the local store, e.g. a team's MLflow server",
    )
    bases_dir: Path | None = Field(default=None, description="where packaged pretrained bases are converted to "
                                   "checkpoints (default: $CYOA_HOME/bases); share one across homes")
    stories_dir: Path = Field(default=STORIES_DIR, description="folder of story files the build reads")
    public_data_dir: Path = Field(
        default=REPO_ROOT.parent / "shared" / "data" / "public",
        description="folder of the openly licensed extra sources (holds SOURCES.md)",
    )
    model_name: str = Field(default="cyoa-storyteller", description="registered model name in the MLflow registry")
    block_list: str = Field(default="", description="comma-separated words no scene or player text may contain")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    challenger_share: float = Field(default=0.0, ge=0.0, le=1.0,
                                    description="share of new games the @challenger writes (0: off)")
    reload_seconds: float = Field(default=60.0, gt=0, description="how often the bot looks for a new champion")
    decoder: Literal["auto", "llama.cpp", "transformers"] = Field(
        default="auto", description="which path writes scenes: llama.cpp (fast), transformers, or auto (llama.cpp "
        "when the model converts and llama-cpp-python is installed)")
    gguf_weights: Literal["auto", "bf16", "q8_0", "f16", "f32"] = Field(
        default="auto", description="weight type of the GGUF file the llama.cpp path converts each version to "
        "(auto: bf16 where llama.cpp multiplies it in hardware, else q8_0)")
    decoder_slots: int = Field(default=16, ge=1, le=64,
                               description="scenes the llama.cpp path writes at once (branches of several games; "
                               "the transformers path's batch size too)")
    decoder_continuous: bool = Field(
        default=True, description="llama.cpp path: a scene joins the sequences being written as soon as a slot "
        "frees, instead of batch by batch (measured: 61 scenes a minute at 16 slots against 37 in batches of 8)")
    decoder_cache_mb: int = Field(default=2048, ge=0, le=65536,
                                  description="host memory for cached prompt states of the llama.cpp path (about "
                                  "50 MB a game in play; past it the least recently used go)")
    write_deadline: float = Field(default=180.0, ge=5, le=3600,
                                  description="seconds one batched model call may take before it is given up "
                                  "(a hung generation); the games in it reopen their votes")
    web_vote_seconds: int = Field(default=60, ge=10, le=3600,
                                  description="seconds a web game's vote stays open (web rooms have no /config)")
    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN",
                                            description="the bot's token from the Discord developer portal")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # a bad value in the environment or .env: say which variable and why
            problems = "; ".join(f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors())
            raise ConfigError(f"invalid setting (environment or .env): {problems}") from exc

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def tracking(self) -> TrackingTarget:
        # A tracking server's own artifact store decides where artifacts go. A database the client opens itself
        # (the default, or MLFLOW_TRACKING_URI=sqlite:///...) has none: MLflow would put new experiments'
        # artifacts in ./mlruns of whatever directory cyoa runs in, so they go to $CYOA_HOME/mlartifacts.
        root = None if _is_server(self.tracking_uri) else self.home / "mlartifacts"
        return TrackingTarget(self.tracking_uri, root)

    @property
    def games_db(self) -> Path:
        """The game store `cyoa play` and the bot write, and the feedback export and report read."""
        return self.home / "cyoa.db"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def blocked_words(self) -> frozenset[str]:
        return frozenset(word.strip().casefold() for word in self.block_list.split(",") if word.strip())

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def bases(self) -> Path:
        """Pretrained bases converted from their packages (models.pretrained), once per folder."""
        return self.bases_dir or self.home / "bases"

    def decoding(self) -> Decoding:
        """How the model writes (``models.fast_job.Decoding``); GGUF files are cached in $CYOA_HOME/gguf."""
        from models.fast_job import Decoding  # imported here: models pulls in torch

        return Decoding(self.decoder, self.gguf_weights, self.decoder_slots, self.home / "gguf",
                        self.decoder_cache_mb, self.decoder_continuous)

    def model_uri(self, alias: str) -> str:
        return f"models:/{self.model_name}@{alias}"


def _is_server(uri: str) -> bool:
    """Whether a tracking URI names an MLflow server (which has an artifact store), not a local store."""
    return urlparse(uri).scheme in {"http", "https"} or uri.startswith("databricks")


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable behind a settings field (aliased ones are named as they are)."""
    name = str(location[0]) if location else "?"
    return name if name.isupper() else f"CYOA_{name.upper()}"
