"""Immutable story content: a story is a tree of scenes joined by choices.

These are the structural types the game and the dataset share. The authoring rules for the bundled
dataset (word counts, depth, genre) are checked by ``data.validation``, which reports every problem with
its location; the models here only say what shape a story has.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1
"""Version of the story file schema; bump it when a field changes meaning."""


class EndingKind(StrEnum):
    GOOD = "good"
    BAD = "bad"
    NEUTRAL = "neutral"


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    next: str = Field(min_length=1, description="id of the scene this choice leads to")


class Scene(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    choices: tuple[Choice, ...] = ()
    ending: bool = False
    ending_kind: EndingKind | None = None

    @model_validator(mode="after")
    def _ending_or_choices(self) -> Scene:
        if self.ending and self.choices:
            raise ValueError("an ending has no choices")
        if self.ending and self.ending_kind is None:
            raise ValueError("an ending needs an ending_kind (good, bad or neutral)")
        if not self.ending and self.ending_kind is not None:
            raise ValueError("ending_kind is set but ending is not true")
        if not self.ending and not self.choices:
            raise ValueError("a scene needs choices, or ending: true with an ending_kind")
        return self


class Story(BaseModel):
    """One bundled story. The first scene is the opening."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    genre: str
    title: str = Field(min_length=1)
    premise: str = Field(min_length=1)
    lore: tuple[str, ...] = ()
    scenes: tuple[Scene, ...] = Field(min_length=1)

    @property
    def root(self) -> Scene:
        return self.scenes[0]

    def scene(self, scene_id: str) -> Scene:
        for scene in self.scenes:
            if scene.id == scene_id:
                return scene
        raise KeyError(f"story {self.id} has no scene {scene_id!r}")
