"""Validation of story files: every problem of a file, each with file, story, scene and field.

The structural schema lives in ``engine.story``; the authoring rules of the bundled dataset (lengths,
choice counts, depth, known genre, a tree without cycles) live here, in ``StoryRules``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from data.issues import ValidationIssue, field_path, pydantic_message
from data.normalise import normalise_choice, word_count
from engine.genres import GENRE_IDS
from engine.story import Story


@dataclass(frozen=True)
class StoryRules:
    """Bounds every bundled story keeps. Defaults are the dataset's published rules (README)."""

    scene_words: tuple[int, int] = (40, 130)
    choice_words: tuple[int, int] = (3, 14)
    choices_per_scene: tuple[int, int] = (2, 4)
    min_depth: int = 4
    lore_facts: tuple[int, int] = (1, 8)
    premise_words: tuple[int, int] = (5, 45)
    genres: frozenset[str] = field(default_factory=lambda: GENRE_IDS)


DEFAULT_RULES = StoryRules()

# A sentence break inside the premise: end punctuation, optional closing quote, space, capital letter.
_SENTENCE_BREAK = re.compile(r"[.!?][\"'\u201d\u2019)]?\s+[A-Z\"\u201c\u300c]")


@dataclass
class StoryFileReport:
    """What validating one file found: the parsed story if it is valid, and every issue."""

    path: str
    story: Story | None
    issues: list[ValidationIssue]


class _Checker:
    """Collects the issues of one story file; each ``check_*`` method adds to ``issues``."""

    def __init__(self, path: str, raw: dict[str, Any], rules: StoryRules) -> None:
        self.path = path
        self.raw = raw
        self.rules = rules
        self.story_id = raw["id"] if isinstance(raw.get("id"), str) and raw.get("id") else None
        self.issues: list[ValidationIssue] = []
        self.scenes: list[tuple[int, dict[str, Any]]] = [
            (index, scene)
            for index, scene in enumerate(raw.get("scenes") or [])
            if isinstance(scene, dict)
        ] if isinstance(raw.get("scenes"), list) else []

    def add(self, message: str, scene: str | None = None, field_name: str | None = None) -> None:
        self.issues.append(
            ValidationIssue(self.path, message, story=self.story_id, scene=scene, field=field_name)
        )

    def scene_label(self, index: int) -> str:
        scenes = self.raw.get("scenes")
        if isinstance(scenes, list) and index < len(scenes):
            item = scenes[index]
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
                return str(item["id"])
        return f"#{index}"

    # --- schema -------------------------------------------------------------------------------
    def check_schema(self) -> Story | None:
        try:
            return Story.model_validate(self.raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if len(loc) >= 2 and loc[0] == "scenes" and isinstance(loc[1], int):
                    rest = field_path(loc[2:]) or None
                    self.add(pydantic_message(error), scene=self.scene_label(loc[1]), field_name=rest)
                else:
                    self.add(pydantic_message(error), field_name=field_path(loc) or None)
            return None

    # --- story-level rules --------------------------------------------------------------------
    def check_story_fields(self, file_stem: str | None) -> None:
        rules = self.rules
        if self.story_id and file_stem is not None and file_stem != self.story_id:
            self.add(f"the file must be named {self.story_id}.json (it is {file_stem}.json)", field_name="id")
        genre = self.raw.get("genre")
        if isinstance(genre, str) and genre not in rules.genres:
            known = ", ".join(sorted(rules.genres))
            self.add(f"unknown genre {genre!r} (known: {known})", field_name="genre")
        premise = self.raw.get("premise")
        if isinstance(premise, str) and premise.strip():
            words = word_count(premise)
            low, high = rules.premise_words
            if not low <= words <= high:
                self.add(f"{words} words, needs {low}-{high}", field_name="premise")
            if _SENTENCE_BREAK.search(premise.strip()) or premise.strip()[-1] not in ".!?\"”":
                self.add("must be exactly one sentence ending in . ! or ?", field_name="premise")
        lore = self.raw.get("lore")
        if isinstance(lore, list):
            low, high = rules.lore_facts
            if not low <= len(lore) <= high:
                self.add(f"{len(lore)} facts, needs {low}-{high}", field_name="lore")
            for index, fact in enumerate(lore):
                if isinstance(fact, str) and not fact.strip():
                    self.add("empty fact", field_name=f"lore[{index}]")

    # --- scene-level rules --------------------------------------------------------------------
    def check_scenes(self) -> None:
        seen: dict[str, int] = {}
        for index, scene in self.scenes:
            scene_id = scene.get("id")
            if isinstance(scene_id, str) and scene_id:
                if scene_id in seen:
                    self.add(f"duplicate scene id (also used by scenes[{seen[scene_id]}])", scene=scene_id,
                             field_name="id")
                else:
                    seen[scene_id] = index
            label = self.scene_label(index)
            text = scene.get("text")
            if isinstance(text, str) and text.strip():
                words = word_count(text)
                low, high = self.rules.scene_words
                if not low <= words <= high:
                    self.add(f"{words} words, needs {low}-{high}", scene=label, field_name="text")
            self.check_choices(label, scene)

    def check_choices(self, label: str, scene: dict[str, Any]) -> None:
        choices = scene.get("choices")
        if not isinstance(choices, list) or scene.get("ending") is True:
            return
        low, high = self.rules.choices_per_scene
        if choices and not low <= len(choices) <= high:
            self.add(f"{len(choices)} choice(s), needs {low}-{high}", scene=label, field_name="choices")
        first_seen: dict[str, int] = {}
        word_low, word_high = self.rules.choice_words
        for index, choice in enumerate(choices):
            if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
                continue
            text = choice["text"]
            if not text.strip():
                continue
            words = word_count(text)
            if not word_low <= words <= word_high:
                self.add(f"{words} words ({text!r}), needs {word_low}-{word_high}", scene=label,
                         field_name=f"choices[{index}]")
            key = normalise_choice(text).casefold()
            if key in first_seen:
                self.add(f"repeats choices[{first_seen[key]}] ({text!r}); choices must differ", scene=label,
                         field_name=f"choices[{index}]")
            else:
                first_seen[key] = index

    # --- the graph ----------------------------------------------------------------------------
    def links(self) -> dict[str, list[tuple[int, str]]]:
        """scene id -> [(choice index, target id)] for every choice with a string target."""
        out: dict[str, list[tuple[int, str]]] = {}
        for _, scene in self.scenes:
            scene_id = scene.get("id")
            if not isinstance(scene_id, str) or scene_id in out:
                continue
            choices = scene.get("choices") if isinstance(scene.get("choices"), list) else []
            out[scene_id] = [
                (index, choice["next"])
                for index, choice in enumerate(choices or [])
                if isinstance(choice, dict) and isinstance(choice.get("next"), str)
            ]
        return out

    def check_graph(self) -> None:
        links = self.links()
        if not links:
            return
        for scene_id, targets in links.items():
            for index, target in targets:
                if target not in links:
                    self.add(f"leads to unknown scene {target!r}", scene=scene_id, field_name=f"choices[{index}]")
        root = self.scene_label(0)
        if root not in links:
            return
        depth = self.walk(root, links)
        for scene_id in links:
            if scene_id not in depth:
                self.add(f"not reachable from the opening scene {root}", scene=scene_id)
        if depth.get(root, 0) < self.rules.min_depth:
            self.add(
                f"the longest path from {root} takes {depth.get(root, 0)} choice(s); "
                f"main branches need at least {self.rules.min_depth}",
                field_name="scenes",
            )

    def walk(self, root: str, links: dict[str, list[tuple[int, str]]]) -> dict[str, int]:
        """Depth-first walk from the root: reports cycles, returns each reachable scene's longest depth."""
        depth: dict[str, int] = {}
        on_path: list[str] = []

        def visit(scene_id: str) -> int:
            if scene_id in depth:
                return depth[scene_id]
            on_path.append(scene_id)
            best = 0
            for index, target in links.get(scene_id, []):
                if target not in links:
                    continue
                if target in on_path:
                    cycle = " -> ".join([*on_path[on_path.index(target):], target])
                    self.add(f"leads back to {target!r}, making a cycle {cycle}", scene=scene_id,
                             field_name=f"choices[{index}]")
                    continue
                best = max(best, 1 + visit(target))
            on_path.pop()
            depth[scene_id] = best
            return best

        visit(root)
        return depth


def _load_json(path: Path) -> tuple[Any, ValidationIssue | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, ValidationIssue(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return None, ValidationIssue(str(path), f"cannot read the file: {exc.strerror or exc}")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, ValidationIssue(str(path), f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")


def validate_story_data(
    raw: Any, path: str, rules: StoryRules = DEFAULT_RULES, file_stem: str | None = None
) -> StoryFileReport:
    """Check one story already parsed from JSON. ``file_stem`` (the file name) must equal the story id."""
    if not isinstance(raw, dict):
        issue = ValidationIssue(path, f"the top level must be a JSON object, not {type(raw).__name__}")
        return StoryFileReport(path, None, [issue])
    checker = _Checker(path, raw, rules)
    story = checker.check_schema()
    checker.check_story_fields(file_stem)
    checker.check_scenes()
    checker.check_graph()
    issues = sorted(set(checker.issues), key=checker.issues.index)
    return StoryFileReport(path, story if not issues else None, issues)


def validate_story_file(path: Path, rules: StoryRules = DEFAULT_RULES) -> StoryFileReport:
    raw, problem = _load_json(path)
    if problem is not None:
        return StoryFileReport(str(path), None, [problem])
    return validate_story_data(raw, str(path), rules, file_stem=path.stem)


def story_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every ``*.json`` file under the given files and folders, sorted within each folder."""
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob("*.json"))
        else:
            yield path


def load_stories(folder: Path, rules: StoryRules = DEFAULT_RULES) -> tuple[list[Story], list[ValidationIssue]]:
    """Every story in a folder, or every issue found in any of them."""
    stories: list[Story] = []
    issues: list[ValidationIssue] = []
    seen: dict[str, str] = {}
    for path in story_files([folder]):
        report = validate_story_file(path, rules)
        issues.extend(report.issues)
        if report.story is not None:
            if report.story.id in seen:
                issues.append(ValidationIssue(str(path), f"story id also used by {seen[report.story.id]}",
                                              story=report.story.id, field="id"))
            seen[report.story.id] = str(path)
            stories.append(report.story)
    return stories, issues
