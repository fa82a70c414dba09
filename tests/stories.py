"""A small valid story for tests to break one rule at a time.

Shape (every non-ending scene has 2 choices; the main branch s1-s2-s4-s6-s8 takes 4 choices)::

    s1 -> s2 -> s4 -> s6 -> s8 (good)
                            -> s9 (bad)
                      -> s7 (neutral)
                -> s5 (bad)
          -> s3 (neutral)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

WORDS = (
    "Lanterns sway above the narrow street while Hana-chan tugs your sleeve and points at the shrine gate. "
    "The air smells of grilled squid and rain on old cedar, and somewhere a bell rings three times. "
    "You feel the charm in your pocket grow warm as the crowd parts around a figure in a fox mask."
)


def scene_text(tag: str) -> str:
    """About 55 words of scene text, different for each tag."""
    return f"Scene {tag}. {WORDS}"


def choice(text: str, target: str) -> dict[str, str]:
    return {"text": text, "next": target}


def ending(scene_id: str, kind: str) -> dict[str, Any]:
    return {"id": scene_id, "text": scene_text(scene_id), "ending": True, "ending_kind": kind}


def story_dict(story_id: str = "moon_shrine", genre: str = "yokai_horror") -> dict[str, Any]:
    return copy.deepcopy({
        "id": story_id,
        "genre": genre,
        "title": "The Moon Shrine",
        "premise": "A fox spirit steals the festival moon and only you can bargain for its return.",
        "lore": ["Hana-chan is the shrine keeper's granddaughter.", "The fox spirit keeps every promise."],
        "scenes": [
            {"id": "s1", "text": scene_text("s1"), "choices": [
                choice("Follow the fox mask into the crowd", "s2"), choice("Ask Hana-chan about the bell", "s3")]},
            {"id": "s2", "text": scene_text("s2"), "choices": [
                choice("Climb the moss-covered shrine steps", "s4"), choice("Hide behind the sake barrels", "s5")]},
            ending("s3", "neutral"),
            {"id": "s4", "text": scene_text("s4"), "choices": [
                choice("Offer the fox your warm charm", "s6"), choice("Ring the shrine bell three times", "s7")]},
            ending("s5", "bad"),
            {"id": "s6", "text": scene_text("s6"), "choices": [
                choice("Promise the fox a song at dawn", "s8"), choice("Snatch the moon and run away", "s9")]},
            ending("s7", "neutral"),
            ending("s8", "good"),
            ending("s9", "bad"),
        ],
    })


def write_story(folder: Path, data: Any, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    story_id = data.get("id", "story") if isinstance(data, dict) else "story"
    path = folder / f"{name or story_id}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
