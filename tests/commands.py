"""Running the `cyoa` command line in tests."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cyoa.cli import app

runner = CliRunner()


def run_json(*args: str) -> dict[str, object]:
    """Run `cyoa ARGS` (which must succeed) and read the JSON it printed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]
