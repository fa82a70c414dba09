"""What an operator's tools read from a running service: ``/health`` (for systemd, a load balancer or a
monitor) and ``/metrics`` (Prometheus). The numbers are the engine's own (``engine.measures``, the queues, the
session layers), read at each scrape, so nothing on the game path waits on metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from engine.queue import BatchingWriter
from engine.tables import Tables
from engine.writers import Writers

STARTUP_GRACE_SECONDS = 120.0  # a bot not yet connected this soon after start is starting, not unhealthy
FROZEN_SECONDS = 30.0  # a game seen frozen for this long is stuck (a vote closing passes through the state)


@dataclass
class Service:
    """The running parts, by frontend: what health and metrics read."""

    writers: Writers
    tables: dict[str, Tables] = field(default_factory=dict)  # "discord", "web", "terminal"
    bot_ready: Callable[[], bool] | None = None  # None: no bot in this process
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _frozen_since: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def queues(self) -> Iterator[BatchingWriter]:
        for writer in self.writers.all():
            if isinstance(writer, BatchingWriter):
                yield writer

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, what was checked). Unhealthy: the bot has lost Discord past the start-up grace, or a game
        is frozen (running, but nothing will move it on: its timer or writing died)."""
        problems = []
        now = self.clock()
        bot = None if self.bot_ready is None else self.bot_ready()
        if bot is False and now - self.started > STARTUP_GRACE_SECONDS:
            problems.append("the bot is not connected to Discord")
        frozen = {game for tables in self.tables.values() for game in tables.frozen()}
        self._frozen_since = {game: self._frozen_since.get(game, now) for game in frozen}
        stuck = [game for game, since in self._frozen_since.items() if now - since >= FROZEN_SECONDS]
        if stuck:
            problems.append(f"{len(stuck)} game(s) frozen for {FROZEN_SECONDS:.0f} s or more: {', '.join(stuck)}")
        return not problems, {
            "status": "ok" if not problems else "unhealthy", "problems": problems,
            "storyteller": self.writers.champion, "challenger": self.writers.challenger,
            "games": {name: _running(tables) for name, tables in self.tables.items()},
            "queue": sum(queue.pending for queue in self.queues()), "bot": bot,
        }


def _running(tables: Tables) -> int:
    return sum(not game.ended for game in tables.games.values())


class ServiceCollector(Collector):
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        games = GaugeMetricFamily("cyoa_games_running", "Games in progress", labels=["frontend"])
        votes = CounterMetricFamily("cyoa_votes", "Votes cast (a changed vote counts again)", labels=["frontend"])
        for name, tables in service.tables.items():
            games.add_metric([name], _running(tables))
            votes.add_metric([name], tables.votes_cast)
        yield games
        yield votes
        depth = GaugeMetricFamily("cyoa_queue_depth", "Scene requests waiting for the storyteller",
                                  labels=["version"])
        written = CounterMetricFamily("cyoa_scenes_written", "Scenes the storyteller answered", labels=["version"])
        faults = CounterMetricFamily("cyoa_storyteller_faults", "Model calls that failed or passed their deadline",
                                     labels=["version"])
        seconds = HistogramMetricFamily("cyoa_write_seconds", "Seconds per model call (a batch of scenes)",
                                        labels=["version"])
        for queue in service.queues():
            version = queue.model_version
            depth.add_metric([version], queue.pending)
            written.add_metric([version], queue.written)
            faults.add_metric([version], queue.faults)
            buckets = [("+Inf" if bound == float("inf") else repr(bound), count)
                       for bound, count in queue.call_seconds.cumulative()]
            seconds.add_metric([version], buckets, queue.call_seconds.total)
        yield from (depth, written, faults, seconds)
        serving = GaugeMetricFamily("cyoa_model_in_service", "1 for each storyteller version serving new games",
                                    labels=["version", "role"])
        serving.add_metric([service.writers.champion, "champion"], 1)
        if service.writers.challenger:
            serving.add_metric([service.writers.challenger, "challenger"], 1)
        yield serving


def add_service_routes(app: FastAPI, service: Service) -> None:
    """``/health`` (200, or 503 with the problems) and ``/metrics`` on ``app``."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))

    @app.get("/health", tags=["service"])
    async def health() -> JSONResponse:
        healthy, body = service.health()
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def service_app(service: Service) -> FastAPI:
    """An app with only ``/health`` and ``/metrics``: for a process that runs the bot without the web."""
    app = FastAPI(title="cyoa service", docs_url=None, redoc_url=None)
    add_service_routes(app, service)
    return app
