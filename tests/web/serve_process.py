"""Run by tests/web/test_launcher.py in a process of its own: the service (``cyoa.service.run_service``, what
``cyoa serve`` runs) with the web over a SQLite file and the fake writer, on the port given, until a signal
stops it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from cyoa.service import Parts, run_service
from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.queue import BatchingWriter
from engine.writers import Writers
from web.launcher import build_tables


async def main(path: Path, port: int, vote_seconds: int) -> None:
    async with SQLiteGameStore(path) as store:
        writers = Writers(BatchingWriter(FakeWriter(), gather_seconds=0.0))
        tables = build_tables(writers, store, premises=[], vote_seconds=vote_seconds)
        await run_service(Parts(writers, web=tables, port=port))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 60))
