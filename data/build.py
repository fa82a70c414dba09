"""Turning story trees into training examples: one step per edge, split by story, with a content digest.

Everything here is pure and deterministic: the same stories, sources and options give byte-identical
splits and the same digest. Writing and MLflow logging happen elsewhere (``write_build``,
``data.versioning``), only after the whole build has succeeded, so a broken input writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from data.atomic import write_text_atomic
from data.normalise import normalise_choice, normalise_text, word_count
from data.sources import ExtraSource
from data.steps import STEP_FORMAT_VERSION, HistoryItem, Step, steps_to_jsonl
from engine.story import SCHEMA_VERSION, Scene, Story

SPLITS: tuple[str, ...] = ("train", "validation", "test")
DIGEST_LENGTH = 16  # hex characters; fits MLflow's dataset digest column (36)


@dataclass(frozen=True)
class BuildOptions:
    seed: int = 1234
    validation_fraction: float = 0.10
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        if not (0 <= self.validation_fraction < 1 and 0 <= self.test_fraction < 1
                and self.validation_fraction + self.test_fraction < 1):
            raise ValueError("validation and test fractions must each be in [0, 1) and sum to less than 1")


@dataclass
class DatasetBuild:
    """The result of a build: splits of steps, which story went where, statistics and digests."""

    options: BuildOptions
    stories: list[Story]
    sources: list[ExtraSource]
    story_split: dict[str, str]
    splits: dict[str, list[Step]]
    stats: dict[str, float | int] = field(default_factory=dict)

    def split_jsonl(self, split: str) -> str:
        return steps_to_jsonl(self.splits[split])

    def split_digest(self, split: str) -> str:
        return hashlib.sha256(self.split_jsonl(split).encode("utf-8")).hexdigest()[:DIGEST_LENGTH]

    @property
    def digest(self) -> str:
        """Content digest of the whole dataset: formats, then every split in order."""
        hasher = hashlib.sha256(f"schema={SCHEMA_VERSION};steps={STEP_FORMAT_VERSION}\n".encode())
        for split in SPLITS:
            hasher.update(f"[{split}]\n".encode())
            hasher.update(self.split_jsonl(split).encode("utf-8"))
        return hasher.hexdigest()[:DIGEST_LENGTH]

    @property
    def params(self) -> dict[str, str]:
        return {
            "sources": ",".join(["bundled", *(source.name for source in self.sources)]),
            "filters": "extra sources: train split only; see metadata.json for rows dropped per source",
            "split_seed": str(self.options.seed),
            "validation_fraction": str(self.options.validation_fraction),
            "test_fraction": str(self.options.test_fraction),
            "split_by": "story",
            "schema_version": str(SCHEMA_VERSION),
            "step_format_version": str(STEP_FORMAT_VERSION),
            "normalisation": "NFC, whitespace collapsed, case kept",
        }

    def metadata(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "split_digests": {split: self.split_digest(split) for split in SPLITS},
            "params": self.params,
            "stats": self.stats,
            "splits": {split: sorted(s for s, where in self.story_split.items() if where == split) for split in SPLITS},
            "sources": [
                {"name": "bundled", "licence": "project's own (see LICENSE)", "origin": "data/stories",
                 "stories": len(self.stories)},
                *(source.metadata() for source in self.sources),
            ],
        }


def _clean_scene(scene: Scene) -> tuple[str, list[str]]:
    return normalise_text(scene.text), [normalise_choice(choice.text) for choice in scene.choices]


def story_steps(story: Story) -> list[Step]:
    """One step per edge. A scene reached along several paths uses its first path in breadth-first order."""
    by_id = {scene.id: scene for scene in story.scenes}
    paths: dict[str, list[HistoryItem]] = {story.root.id: []}
    queue = deque([story.root.id])
    steps: list[Step] = []
    lore = [normalise_text(fact) for fact in story.lore]
    while queue:
        scene = by_id[queue.popleft()]
        text, choices = _clean_scene(scene)
        for index, choice in enumerate(scene.choices):
            target = by_id[choice.next]
            next_text, next_choices = _clean_scene(target)
            steps.append(Step(
                id=f"{story.id}/{scene.id}>{target.id}", genre=story.genre, premise=normalise_text(story.premise),
                lore=lore, history=list(paths[scene.id]), scene=text, choices=choices, chosen=index,
                next_scene=next_text, next_choices=next_choices, ending=target.ending_kind,
            ))
            if target.id not in paths:
                paths[target.id] = [*paths[scene.id], HistoryItem(scene=text, choices=choices, chosen=index)]
                queue.append(target.id)
    return steps


def _story_draw(seed: int, story_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the story id alone."""
    digest = hashlib.sha256(f"{seed}:{story_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_stories(story_ids: list[str], options: BuildOptions) -> dict[str, str]:
    """Assign each story to a split by a seeded hash of its id.

    A story's split depends on its own id only, so adding stories later never moves an old test story
    into training (which would leak it into every later model's training data).
    """
    draws = {story_id: _story_draw(options.seed, story_id) for story_id in sorted(set(story_ids))}
    test_until = options.test_fraction
    validation_until = test_until + options.validation_fraction
    out = {
        story_id: "test" if draw < test_until else "validation" if draw < validation_until else "train"
        for story_id, draw in draws.items()
    }
    # Tiny datasets can leave a wanted split empty: move in the train story whose draw is closest.
    for split, edge in (("test", test_until), ("validation", validation_until)):
        wanted = options.test_fraction if split == "test" else options.validation_fraction
        if wanted > 0 and split not in out.values():
            train = [s for s in out if out[s] == "train"]
            if len(train) > 1:
                out[min(train, key=lambda s: abs(draws[s] - edge))] = split
    return out


def _stats(stories: list[Story], splits: dict[str, list[Step]], sources: list[ExtraSource]) -> dict[str, float | int]:
    scenes = [scene for story in stories for scene in story.scenes]
    choices = [choice for scene in scenes for choice in scene.choices]
    per_scene = Counter(len(scene.choices) for scene in scenes if not scene.ending)
    endings = Counter(str(scene.ending_kind) for scene in scenes if scene.ending)
    stats: dict[str, float | int] = {
        "stories": len(stories),
        "scenes": len(scenes),
        "genres": len({story.genre for story in stories}),
        "choices": len(choices),
        "endings": sum(endings.values()),
        **{f"endings_{kind}": endings.get(kind, 0) for kind in ("good", "bad", "neutral")},
        **{f"scenes_with_{n}_choices": per_scene.get(n, 0) for n in (2, 3, 4)},
        "mean_scene_words": round(fmean(word_count(s.text) for s in scenes), 2) if scenes else 0,
        "mean_scene_chars": round(fmean(len(normalise_text(s.text)) for s in scenes), 2) if scenes else 0,
        "mean_choice_words": round(fmean(word_count(c.text) for c in choices), 2) if choices else 0,
        "mean_choice_chars": round(fmean(len(normalise_choice(c.text)) for c in choices), 2) if choices else 0,
        **{f"examples_{split}": len(splits[split]) for split in SPLITS},
        "examples": sum(len(splits[split]) for split in SPLITS),
    }
    for source in sources:
        stats[f"examples_extra_{source.name}"] = len(source.steps)
    return stats


def build_dataset(stories: list[Story], sources: list[ExtraSource], options: BuildOptions) -> DatasetBuild:
    """Build the splits from validated stories and any extra sources (which go to train only)."""
    story_split = split_stories([story.id for story in stories], options)
    splits: dict[str, list[Step]] = {split: [] for split in SPLITS}
    for story in sorted(stories, key=lambda s: s.id):
        splits[story_split[story.id]].extend(story_steps(story))
    for source in sources:
        splits["train"].extend(source.steps)
    build = DatasetBuild(options, sorted(stories, key=lambda s: s.id), sources, story_split, splits)
    build.stats = _stats(build.stories, splits, sources)
    return build


def write_build(build: DatasetBuild, folder: Path) -> Path:
    """Write the splits and metadata under ``folder/<digest>/``; every file is written atomically."""
    out = folder / build.digest
    for split in SPLITS:
        write_text_atomic(out / f"{split}.jsonl", build.split_jsonl(split))
    write_text_atomic(out / "metadata.json", json.dumps(build.metadata(), indent=2, ensure_ascii=False) + "\n")
    return out
