from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.genres import GENRE_IDS, genre_by_id
from engine.story import Story
from tests.stories import story_dict


def test_story_survives_a_json_round_trip() -> None:
    story = Story.model_validate(story_dict())
    again = Story.model_validate_json(story.model_dump_json())
    assert again == story
    assert again.scene("s8").ending_kind == "good"
    assert again.root.choices[0].next == "s2"


def test_stories_are_immutable() -> None:
    story = Story.model_validate(story_dict())
    with pytest.raises(ValidationError):
        story.title = "Other"  # type: ignore[misc]


def test_unknown_scene_lookup_names_the_story() -> None:
    with pytest.raises(KeyError, match="story moon_shrine has no scene 's42'"):
        Story.model_validate(story_dict()).scene("s42")


def test_genres() -> None:
    assert len(GENRE_IDS) >= 12
    assert genre_by_id("mecha").name == "Mecha"
    with pytest.raises(KeyError, match="unknown genre 'western'"):
        genre_by_id("western")
