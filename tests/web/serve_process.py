"""Run by tests/web/test_launcher.py in a process of its own: ``serve`` over a SQLite file and the fake writer,
on the port given, until a signal stops it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from data.store import SQLiteGameStore
from engine.fakes import FakeWriter
from engine.queue import BatchingWriter
from web.launcher import build_tables, serve


async def main(path: Path, port: int) -> None:
    async with SQLiteGameStore(path) as store:
        writer = BatchingWriter(FakeWriter(), gather_seconds=0.0)
        await serve(build_tables(writer, store, premises=[]), "127.0.0.1", port)
        await writer.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
