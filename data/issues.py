"""One problem found in a data file, with the location that lets a person fix it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ValidationIssue:
    """``data/stories/moon_shrine.json: story moon_shrine, scene s7, choices[2]: leads to ...``."""

    path: str
    message: str
    story: str | None = None
    scene: str | None = None
    field: str | None = None
    line: int | None = None
    step: str | None = None

    def __str__(self) -> str:
        where = [
            part
            for part in (
                f"line {self.line}" if self.line is not None else None,
                f"step {self.step}" if self.step is not None else None,
                f"story {self.story}" if self.story is not None else None,
                f"scene {self.scene}" if self.scene is not None else None,
                self.field,
            )
            if part
        ]
        location = ", ".join(where)
        return f"{self.path}: {location}: {self.message}" if location else f"{self.path}: {self.message}"


def field_path(loc: tuple[Any, ...]) -> str:
    """Render a pydantic location such as ``('choices', 2, 'next')`` as ``choices[2].next``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def pydantic_message(error: Mapping[str, Any]) -> str:
    """A pydantic error message in the project's style: lower-case, no 'Value error,' prefix."""
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error.get("type") == "extra_forbidden":
        return "unknown field (check the spelling)"
    if error.get("type") == "missing":
        return "missing (required)"
    return message[:1].lower() + message[1:]
