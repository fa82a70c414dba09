"""Token buckets: how many requests a player or a client address may make, in bursts and over time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rate:
    """``burst`` requests at once, then ``per_second`` more each second."""

    burst: float
    per_second: float


@dataclass(frozen=True)
class RateLimits:
    # A page load reads the game, its history and opens the event stream; a player votes and rates a few times
    # a scene. An address may hold several players (a household, a school behind one NAT), so it gets more.
    per_player: Rate = Rate(burst=30, per_second=1.0)
    per_address: Rate = Rate(burst=120, per_second=4.0)
    # Running games started from one address, the most. Each web room is its own tenant of the model's queue
    # (fair shares go round the tenants), so without this one address could open room after room, with fresh
    # cookies, and take most of the model from every Discord server and other visitor.
    games_per_address: int = 5


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Buckets:
    """One bucket per key. Full buckets are forgotten when there are many keys, so memory stays bounded by the
    clients active lately, not by every client ever seen."""

    rate: Rate
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if it was there, else the seconds until one will be."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.rate.burst, now)
        bucket.tokens = min(self.rate.burst, bucket.tokens + (now - bucket.at) * self.rate.per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate.per_second if self.rate.per_second > 0 else float("inf")

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self.rate.per_second >= self.rate.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest rather than grow without bound
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].at)[: self.max_keys // 10 or 1]
            for key in oldest:
                del self._buckets[key]
