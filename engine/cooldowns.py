"""Cooldowns: how soon the same move may be made again by the same someone. Pure: the caller gives the time.

A flood of starts, retries or feedback from one server is what would starve the model for everyone else; the
queue shares the model fairly between servers (``engine.queue``), and cooldowns keep one channel or player
from asking for far more than a game needs in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.errors import CooldownError


@dataclass
class Cooldowns:
    last: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def check(self, kind: str, key: str, seconds: float, at: datetime, what: str) -> None:
        """Refuse ``what`` if ``kind`` was done for ``key`` less than ``seconds`` before ``at``."""
        previous = self.last.get((kind, key))
        if previous is None:
            return
        left = previous + timedelta(seconds=seconds) - at
        if left > timedelta(0):
            wait = max(1, round(left.total_seconds()))
            raise CooldownError(f"{what} again in {wait} s; one every {seconds:.0f} s at most")

    def mark(self, kind: str, key: str, at: datetime) -> None:
        self.last[(kind, key)] = at
        if len(self.last) > 10_000:  # a long-running bot forgets the oldest marks rather than grow forever
            for stale in sorted(self.last, key=self.last.__getitem__)[:5_000]:
                del self.last[stale]
