from __future__ import annotations

from cyoa.cli import app

app()
