"""Per-server settings, declared once with their defaults and bounds (Red-DiscordBot style).

A server stores only the values it changed; everything else is the default here, so a new default reaches
every server that never touched that setting.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import GameRuleError
from engine.votes import VoteRules


class ServerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    vote_window: int = Field(default=60, ge=10, le=3600, description="seconds a vote stays open")
    quorum: int = Field(default=1, ge=1, le=50,
                        description="voters needed; below it the window is extended once, then the top choice wins")
    allowed_channels: tuple[str, ...] = Field(default=(), description="channel ids where games may run (empty: all)")
    max_games: int = Field(default=5, ge=1, le=100, description="games running at once in the server")
    block_words: tuple[str, ...] = Field(default=(), description="words banned in this server's games")
    # Lower bounds keep even a server's own admins from turning a channel into a request flood.
    steer_cooldown: int = Field(default=15, ge=5, le=600,
                                description="seconds between two retries or undos of one channel's game")
    start_cooldown: int = Field(default=30, ge=5, le=3600,
                                description="seconds between two adventures started by one player")

    @property
    def vote_rules(self) -> VoteRules:
        return VoteRules(window_seconds=float(self.vote_window), quorum=self.quorum)

    def changed(self, **values: Any) -> ServerSettings:
        """A copy with ``values`` changed, validated against the declared bounds."""
        try:
            return ServerSettings.model_validate({**self.model_dump(), **values})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise GameRuleError(f"invalid setting: {problems}") from exc

    def overrides(self) -> dict[str, Any]:
        """The values that differ from the defaults: what the store keeps."""
        defaults = ServerSettings().model_dump(mode="json")
        return {name: value for name, value in self.model_dump(mode="json").items() if value != defaults[name]}

    @classmethod
    def from_stored(cls, values: dict[str, Any], base: ServerSettings | None = None) -> ServerSettings:
        """Stored overrides over the defaults (``base``: a frontend's own, e.g. the web's vote window); a value
        that no longer validates falls back to its default."""
        settings = base or cls()
        for name, value in values.items():
            if name in cls.model_fields:
                try:
                    settings = settings.changed(**{name: value})
                except GameRuleError:
                    continue  # an old bound was looser; the default is the safe reading
        return settings
