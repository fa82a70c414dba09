"""A scripted terminal session (stdin) with a real tiny model: start, choose, retry, undo, rate, quit, resume."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cyoa.cli import app

runner = CliRunner()


def test_a_scripted_session_and_its_resume(few_stories: Path) -> None:
    assert runner.invoke(app, ["bootstrap", "--preset", "tiny"]).exit_code == 0

    first = runner.invoke(app, ["play"], input="mecha\n\n1\n1\n1\nr\nu\n*4\n2 stars\n9\nq\n")
    assert first.exit_code == 0, first.output
    out = first.stdout
    scenes = re.findall(r"mecha · scene (\d+)", out)
    # opening, three choices (scene 4), the retry of scene 4, the undo back to scene 3
    assert scenes[:6] == ["1", "2", "3", "4", "4", "3"], scenes
    assert "rated scene 3: ★★★★" in out and "rated scene 3: ★★\n" in out
    assert "choice 9 does not exist" in out
    game_id = re.search(r"cyoa play --game (\w+)", out).group(1)  # type: ignore[union-attr]

    listing = runner.invoke(app, ["play", "--list"])
    assert game_id[:8] in listing.stdout and "mecha" in listing.stdout

    db = sqlite3.connect(few_stories.parent / "cyoa-home" / "cyoa.db")
    counts = dict(db.execute("SELECT counter, count FROM output_counts WHERE model_version = 'cyoa-storyteller/1'"))
    assert counts["outputs"] >= 5  # every answer the engine checked was counted for its model version

    resumed = runner.invoke(app, ["play"], input="q\n")
    assert resumed.exit_code == 0
    assert f"resuming game {game_id}" in resumed.stdout
    assert re.findall(r"mecha · scene (\d+)", resumed.stdout)[0] == "3"
