"""A scripted terminal session (stdin) with a real tiny model: start, choose, retry, undo, rate, quit, resume."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cyoa import play as play_module
from cyoa.cli import app
from cyoa.settings import Settings
from models.registry import set_alias

runner = CliRunner()


def test_a_scripted_session_its_resume_and_a_new_champion(few_stories: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
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
    # The bot's rating rule (engine.tables): one star rating per player and scene, the latest counts.
    assert db.execute("SELECT stars FROM ratings WHERE game_id = ? AND stars IS NOT NULL", (game_id,)).fetchall() \
        == [(2,)]
    # A game saved before the terminal ran on Tables (all in one place, "terminal") still resumes, migrated.
    assert db.execute("SELECT place FROM games WHERE id = ?", (game_id,)).fetchone()[0].startswith("terminal:local:")
    with db:
        db.execute("UPDATE games SET place = 'terminal', state = json_set(state, '$.place', 'terminal')")

    resumed = runner.invoke(app, ["play"], input="q\n")
    assert resumed.exit_code == 0
    assert f"resuming game {game_id}" in resumed.stdout
    assert re.findall(r"mecha · scene (\d+)", resumed.stdout)[0] == "3"
    assert db.execute("SELECT place FROM games WHERE id = ?", (game_id,)).fetchone()[0] == f"terminal:local:{game_id}"


    # A new game in a running session gets the champion of the moment, and the old game keeps its version.
    assert runner.invoke(app, ["train", "--preset", "tiny", "--max-epochs", "1"]).exit_code == 0  # version 2
    settings = Settings()
    script = ["1", "PROMOTE", "n", "idol", "", "q"]

    async def scripted(prompt: str) -> str | None:
        answer = script.pop(0)
        if answer == "PROMOTE":  # someone promotes version 2 while this session runs
            await asyncio.to_thread(set_alias, settings.tracking, settings.model_name, "champion", "2")
            answer = script.pop(0)
        return answer

    monkeypatch.setattr(play_module, "ask", scripted)
    result = runner.invoke(app, ["play"])
    assert result.exit_code == 0, result.output
    versions = dict(db.execute("SELECT genre, model_version FROM games"))
    assert versions == {"mecha": "cyoa-storyteller/1", "idol": "cyoa-storyteller/2"}
    assert db.execute("SELECT scenes FROM games WHERE genre = 'mecha'").fetchone()[0] == 4  # played on with v1
