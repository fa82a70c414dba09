"""AI Dungeon's crowdsourced story trees (MIT) as steps.

A tree is ``first_story_block`` then nested ``action_results`` of ``{action, result, action_results}``.
Every action taken becomes one step with its path as history. The step format wants 2-4 choices at each
scene; where a scene offers one action only, that action is narration in disguise, so it is folded into
the scene ("You leave the hospital. Outside ...") until a real choice comes. Paths through a scene with
more than four actions are dropped and counted; so are edges where the crowd workers swapped narration
and action (an "action" of more than 20 words).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data.normalise import normalise_choice, normalise_text, word_count
from data.sources import ExtraSource
from data.steps import CHOICES_PER_SCENE, HistoryItem, Step
from engine.errors import SourceError

FOLDER = "aidungeon-crowdsourced"
MAX_ACTION_WORDS = 20
PREMISE = "You are one of the few survivors in a silent, ruined world and must find a way to live on."


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    kids = node.get("action_results") or []
    return [kid for kid in kids if isinstance(kid, dict)]


def _usable(kid: dict[str, Any]) -> bool:
    action = kid.get("action")
    result = kid.get("result")
    return (
        isinstance(action, str)
        and isinstance(result, str)
        and bool(action.strip())
        and bool(result.strip())
        and word_count(action) <= MAX_ACTION_WORDS
    )


def _repeats(choices: list[str]) -> bool:
    return len({choice.casefold() for choice in choices}) != len(choices)


def _fits(count: int, allow_none: bool) -> bool:
    low, high = CHOICES_PER_SCENE
    return (allow_none and count == 0) or low <= count <= high


def _as_narration(action: str) -> str:
    """``leave the hospital.`` -> ``You leave the hospital.``"""
    action = normalise_text(action).rstrip(".!")
    if not action.lower().startswith("you "):
        action = "You " + action[:1].lower() + action[1:]
    return action + "."


def _fold(node: dict[str, Any], text: str) -> tuple[dict[str, Any], str, int]:
    """Follow single-action scenes, folding each action and result into the text; count dropped edges."""
    dropped = 0
    while True:
        kids = _children(node)
        usable = [kid for kid in kids if _usable(kid)]
        dropped += len(kids) - len(usable)
        if len(usable) != 1:
            return node, text, dropped
        node = usable[0]
        text = f"{text} {_as_narration(node['action'])} {normalise_text(node['result'])}"


def _next_scene(kid: dict[str, Any]) -> tuple[dict[str, Any], str]:
    node, text, _ = _fold(kid, normalise_text(kid["result"]))
    return node, text


def _walk(source: ExtraSource, tree_id: str, node: dict[str, Any], text: str, history: list[HistoryItem],
          trail: str, lore: list[str]) -> None:
    node, text, dropped = _fold(node, text)
    source.dropped["action looks like narration"] += dropped
    usable = [kid for kid in _children(node) if _usable(kid)]
    choices = [normalise_choice(kid["action"]) for kid in usable]
    if _repeats(choices):
        source.dropped["duplicate actions at one scene"] += len(usable)
        return
    scene_fits = _fits(len(choices), allow_none=False)
    for index, kid in enumerate(usable):
        next_node, next_text = _next_scene(kid)
        next_kids = [k for k in _children(next_node) if _usable(k)]
        next_choices = [normalise_choice(k["action"]) for k in next_kids]
        step_id = f"aidungeon/{tree_id}/{trail}{index}"
        if not scene_fits:
            source.dropped["scene without 2-4 actions"] += 1
        elif not _fits(len(next_choices), allow_none=True) or _repeats(next_choices):
            source.dropped["next scene without 0 or 2-4 actions"] += 1
        else:
            source.steps.append(Step(
                id=step_id, genre="survival", premise=PREMISE, lore=lore, history=list(history), scene=text,
                choices=choices, chosen=index, next_scene=next_text, next_choices=next_choices,
            ))
        if scene_fits:
            deeper = [*history, HistoryItem(scene=text, choices=choices, chosen=index)]
            _walk(source, tree_id, kid, normalise_text(kid["result"]), deeper, f"{trail}{index}.", lore)
        else:
            # The path cannot be written in the step format past this scene; count what is lost below it.
            source.dropped["below a scene without 2-4 actions"] += _count_edges(kid)


def _count_edges(node: dict[str, Any]) -> int:
    return sum(1 + _count_edges(kid) for kid in _children(node))


def load_aidungeon(public_dir: Path) -> ExtraSource:
    folder = public_dir / FOLDER
    files = sorted(folder.glob("crowdsourcedstory*.json"), key=lambda p: int("".join(filter(str.isdigit, p.stem)) or 0))
    if not files:
        raise SourceError(f"{folder}: no crowdsourcedstory*.json files (is the public data folder right?)")
    source = ExtraSource(
        name="aidungeon",
        licence="MIT (Copyright (c) 2019 Nick Walton)",
        origin="github.com/latitudegames/AIDungeon data/stories/crowdsourcedstory*.json "
               "@ 698cd06602e7c3bf70a6fec95868fdbb7f8649a8",
        files=[*files, folder / "LICENSE"],
    )
    for path in files:
        try:
            tree = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"{path}: cannot read the story tree: {exc}") from exc
        if not isinstance(tree, dict) or not isinstance(tree.get("first_story_block"), str):
            raise SourceError(f"{path}: not an AI Dungeon story tree (no first_story_block)")
        tree_id = str(tree.get("tree_id") or path.stem)
        context = normalise_text(str(tree.get("context") or ""))
        lore = [context] if context else []
        _walk(source, tree_id, tree, normalise_text(tree["first_story_block"]), [], "", lore)
    return source
