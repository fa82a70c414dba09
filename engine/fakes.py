"""Fakes of the engine's ports, for tests of game rules (real parts are used everywhere else)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.ports import WrittenScene
from engine.prompt_format import StoryContext, render_target


class FakeWriter:
    """Answers with scripted texts in order, or a well-formed two-choice scene when the script runs out.
    Records every batch it was asked for, so tests can check what was batched together."""

    def __init__(self, script: Sequence[str] = (), model_version: str = "fake/1") -> None:
        self.script = list(script)
        self.calls: list[list[StoryContext]] = []
        self._version = model_version

    @property
    def model_version(self) -> str:
        return self._version

    async def write(self, contexts: Sequence[StoryContext]) -> list[WrittenScene]:
        self.calls.append(list(contexts))
        out = []
        for context in contexts:
            if self.script:
                text = self.script.pop(0)
            else:
                action = context.path[-1].action if context.path else "begin"
                text = render_target(f"You {action.lower()}, and the story goes on.", ["Go left", "Go right"], None)
            out.append(WrittenScene(text, self._version))
        return out
