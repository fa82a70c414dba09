"""One server floods the storyteller (retries as fast as its cooldown allows, starts, feedback from fresh
accounts) while another plays: the calm server's p95 from vote close to next scene stays within 2x of its p95
alone, measured in one run (``bench/bench_fairness.py``; without the queue's round robin between servers the
same run measures about 20x)."""

from __future__ import annotations

import pytest

from bench.bench_fairness import measure


@pytest.mark.slow
def test_a_flooding_server_does_not_starve_another() -> None:
    figures = measure(seconds=10)
    assert figures["alone_scenes"] >= 4 and figures["flooded_scenes"] >= 4, figures  # both halves played
    assert figures["flood_refused"] > 100, figures  # the flood pushed: cooldowns and caps turned most away
    assert figures["ratio"] <= 2.0, figures
