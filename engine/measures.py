"""What a running service counts for its operator: plain numbers kept by the engine's parts, read by whatever
exports them (``cyoa.metrics`` turns them into Prometheus metrics). Nothing here does I/O."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Seconds for one model call: a cold scene on 2 cores takes ~1.6 s, a batch of eight ~8 s, a hang 180 s.
WRITE_SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


@dataclass
class Durations:
    """A histogram of durations: counts per upper bound (the last bucket, +Inf, is ``count``), their sum."""

    bounds: tuple[float, ...] = WRITE_SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, seconds: float) -> None:
        at = bisect.bisect_left(self.bounds, seconds)
        if at < len(self.bounds):
            self.counts[at] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, all): Prometheus's buckets."""
        running, out = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return [*out, (float("inf"), self.count)]
