"""Where a game is played: a typed place, the one rule for writing it as the string the store keeps
(``<frontend>:<server>:<channel>``) and for reading it back. Each frontend names its own parts (Discord: a
guild and a channel id; the web: a room, twice; the terminal: "local" and the game's id); the engine reads
only ``frontend`` and ``server`` (settings, limits, fairness)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    frontend: str  # "discord", "web", "terminal"
    server: str  # what settings, game limits and the model queue's fairness are per (a guild, a web room)
    channel: str  # where one game runs at a time (a channel, a room, a terminal game)

    def __post_init__(self) -> None:
        for name in ("frontend", "server"):
            if not getattr(self, name) or ":" in getattr(self, name):
                raise ValueError(f"a place's {name} must be non-empty and without ':', not {getattr(self, name)!r}")
        if not self.channel:
            raise ValueError("a place's channel must be non-empty")

    def __str__(self) -> str:
        return f"{self.frontend}:{self.server}:{self.channel}"

    @classmethod
    def parse(cls, text: str) -> Place | None:
        """The place ``text`` names, or None if it names none (a game saved before places had three parts)."""
        parts = text.split(":", 2)
        if len(parts) != 3 or not all(parts):
            return None
        return cls(*parts)
