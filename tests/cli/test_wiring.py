"""The one wiring root (``cyoa.wiring``): it builds the parts every frontend runs on, and no frontend package
reaches up into ``cyoa`` for them."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bot
from cyoa.cli import app
from cyoa.settings import Settings
from cyoa.wiring import Wiring, bundled_premises
from engine.fakes import FakeWriter
from engine.writers import Writers


def test_the_bot_package_imports_nothing_of_cyoa() -> None:
    imported = set()
    for path in Path(bot.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert imported and not {name for name in imported if name == "cyoa" or name.startswith("cyoa.")}


def test_the_engine_gets_the_operators_block_list_and_the_bundled_premises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYOA_BLOCK_LIST", "Forbidden, other")
    engine = asyncio.run(Wiring(Settings()).engine(Writers(FakeWriter())))
    assert {"forbidden", "other"} <= engine.rules.checks.block_list
    assert len(engine.premises) == len(bundled_premises()) > 0


def test_cyoa_bot_without_a_token_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", " ")
    result = CliRunner().invoke(app, ["bot"])
    assert result.exit_code != 0 and "no Discord token" in result.output
