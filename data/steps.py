"""The step format: one training or evaluation example per JSON line.

It is the exchange format of the project: ``cyoa data build`` writes it, ``cyoa evaluate --data`` reads
it, and the feedback export writes new rows in it. One object a line::

    {"id": str, "genre": str, "premise": str,
     "history": [{"scene": str, "choices": [str], "chosen": int}],
     "scene": str, "choices": [str], "chosen": int,
     "next_scene": str, "next_choices": [str]}

``next_choices`` is empty when the next scene is an ending. Two optional fields add context: ``lore``
(facts about the world) and ``ending`` (the ending's kind, only when ``next_choices`` is empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data.atomic import write_text_atomic
from data.issues import ValidationIssue, field_path, pydantic_message
from engine.genres import GENRE_IDS
from engine.story import EndingKind

STEP_FORMAT_VERSION = 1
CHOICES_PER_SCENE = (2, 4)


def _check_choices(choices: list[str], allow_empty: bool) -> list[str]:
    low, high = CHOICES_PER_SCENE
    if allow_empty and not choices:
        return choices
    if not low <= len(choices) <= high:
        at_ending = " (or none at an ending)" if allow_empty else ""
        raise ValueError(f"{len(choices)} choice(s), needs {low}-{high}{at_ending}")
    seen: dict[str, int] = {}
    for index, choice in enumerate(choices):
        if not choice.strip():
            raise ValueError(f"choice {index} is empty")
        key = choice.strip().casefold()
        if key in seen:
            raise ValueError(f"choice {index} repeats choice {seen[key]} ({choice!r})")
        seen[key] = index
    return choices


def _check_chosen(chosen: int, choices: list[str]) -> None:
    if not 0 <= chosen < len(choices):
        raise ValueError(f"chosen is {chosen} but there are {len(choices)} choices (0-based index)")


class HistoryItem(BaseModel):
    """A scene earlier on the path, with the choice taken there."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    scene: str = Field(min_length=1)
    choices: list[str]
    chosen: int

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: list[str]) -> list[str]:
        return _check_choices(value, allow_empty=False)

    @model_validator(mode="after")
    def _chosen(self) -> HistoryItem:
        _check_chosen(self.chosen, self.choices)
        return self


class Step(BaseModel):
    """One edge of a story: the path so far and the choice taken, then the scene it leads to."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str = Field(min_length=1)
    genre: str
    premise: str = Field(min_length=1)
    lore: list[str] = Field(default_factory=list)
    history: list[HistoryItem] = Field(default_factory=list)
    scene: str = Field(min_length=1)
    choices: list[str]
    chosen: int
    next_scene: str = Field(min_length=1)
    next_choices: list[str]
    ending: EndingKind | None = Field(default=None, strict=False)  # "good" in JSON is an EndingKind

    @field_validator("genre")
    @classmethod
    def _genre(cls, value: str) -> str:
        if value not in GENRE_IDS:
            raise ValueError(f"unknown genre {value!r} (known: {', '.join(sorted(GENRE_IDS))})")
        return value

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: list[str]) -> list[str]:
        return _check_choices(value, allow_empty=False)

    @field_validator("next_choices")
    @classmethod
    def _next_choices(cls, value: list[str]) -> list[str]:
        return _check_choices(value, allow_empty=True)

    @model_validator(mode="after")
    def _consistent(self) -> Step:
        _check_chosen(self.chosen, self.choices)
        if self.ending is not None and self.next_choices:
            raise ValueError("ending is set but next_choices is not empty")
        return self

    @property
    def action(self) -> str:
        """The choice taken in ``scene``."""
        return self.choices[self.chosen]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_defaults=False), ensure_ascii=False, sort_keys=True)


def parse_step_line(line: str, path: str, line_number: int) -> tuple[Step | None, list[ValidationIssue]]:
    """One line of a step file, or every issue it has."""
    try:
        raw: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, [ValidationIssue(path, f"invalid JSON at column {exc.colno}: {exc.msg}", line=line_number)]
    if not isinstance(raw, dict):
        message = f"a step must be a JSON object, not {type(raw).__name__}"
        return None, [ValidationIssue(path, message, line=line_number)]
    step_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else None
    try:
        return Step.model_validate(raw), []
    except ValidationError as exc:
        issues = [
            ValidationIssue(path, pydantic_message(error), line=line_number, step=step_id,
                            field=field_path(tuple(error["loc"])) or None)
            for error in exc.errors()
        ]
        return None, issues


def read_steps(path: Path) -> tuple[list[Step], list[ValidationIssue]]:
    """Every step of a JSON Lines file and every issue found (blank lines are skipped).

    Duplicate ids are reported: ids are how exported rows and evaluation samples are traced back.
    """
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [ValidationIssue(label, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except OSError as exc:
        return [], [ValidationIssue(label, f"cannot read the file: {exc.strerror or exc}")]
    steps: list[Step] = []
    issues: list[ValidationIssue] = []
    first_line: dict[str, int] = {}
    # Split on "\n" only: str.splitlines() also splits on U+0085 and U+2028, which JSON strings may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        step, found = parse_step_line(line, label, number)
        issues.extend(found)
        if step is None:
            continue
        if step.id in first_line:
            issues.append(ValidationIssue(label, f"duplicate id (first used on line {first_line[step.id]})",
                                          line=number, step=step.id, field="id"))
            continue
        first_line[step.id] = number
        steps.append(step)
    if not steps and not issues:
        issues.append(ValidationIssue(label, "no steps in the file"))
    return steps, issues


def steps_to_jsonl(steps: Iterable[Step]) -> str:
    return "".join(step.to_json() + "\n" for step in steps)


def write_steps(path: Path, steps: Iterable[Step]) -> None:
    write_text_atomic(path, steps_to_jsonl(steps))
