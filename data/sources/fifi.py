"""Fifi's Big Adventure (CC0) as steps.

The gamebook has 120 locations, each printed in 18 inventory variants that differ only in a line of
flavour text: variants with the same location and the same exits are one scene (the lowest page wins).
Its map has loops, so a step carries no history: just the page, the exit taken and the page it leads to.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from data.normalise import normalise_choice, normalise_text
from data.sources import ExtraSource
from data.steps import CHOICES_PER_SCENE, Step
from engine.errors import SourceError

FOLDER = "fifis-big-adventure"
PREMISE = "You take Fifi, a mischievous pink poodle, for a walk across the city and run her person's errands."
LORE = [
    "Fifi is a standard poodle with a pink tint who loves to chase balls and wander off.",
    "Fifi's person has asked you to pick up the dry cleaning and buy fresh flowers on the way back.",
]

_PAGE_SPLIT = re.compile(r'<a name="page(\d+)"></a>')
_TITLE = re.compile(r"<h2>(.*?)</h2>", re.S)
_EXIT = re.compile(r"If you want to (.+?), turn to <a href='#page(\d+)'>")
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class _Page:
    number: str
    title: str
    text: str
    exits: tuple[tuple[str, str], ...]  # (choice text, target page)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.title, tuple(choice for choice, _ in self.exits)


def _parse_page(number: str, body: str) -> _Page | None:
    title_match = _TITLE.search(body)
    if title_match is None:
        return None
    start = title_match.end()
    end = body.find("If you want to", start)
    prose = body[start: end if end >= 0 else len(body)]
    prose = html.unescape(_TAG.sub("\n", prose))
    exits = tuple((normalise_choice(html.unescape(" ".join(choice.split()))), target)
                  for choice, target in _EXIT.findall(body))
    return _Page(number, html.unescape(title_match.group(1)).strip(), normalise_text(prose), exits)


def load_fifi(public_dir: Path) -> ExtraSource:
    path = public_dir / FOLDER / "fifi.html"
    try:
        document = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the gamebook: {exc}") from exc
    source = ExtraSource(
        name="fifi",
        licence="CC0 1.0",
        origin="github.com/savetz/FifisBigAdventure fifi.html @ 33876c3",
        files=[path, public_dir / FOLDER / "LICENSE"],
    )
    parts = _PAGE_SPLIT.split(document)
    pages: dict[str, _Page] = {}
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        page = _parse_page(number, body)
        if page is None:
            source.dropped["page without a location"] += 1
        else:
            pages[number] = page
    if not pages:
        raise SourceError(f"{path}: no pages found (is this Fifi's Big Adventure?)")
    canonical: dict[tuple[str, tuple[str, ...]], _Page] = {}
    for number in sorted(pages):
        canonical.setdefault(pages[number].key, pages[number])
    source.dropped["inventory variant of a page"] += len(pages) - len(canonical)
    low, high = CHOICES_PER_SCENE
    for page in canonical.values():
        choices = [choice for choice, _ in page.exits]
        for index, (_, target_number) in enumerate(page.exits):
            target = pages.get(target_number)
            if target is None:
                source.dropped["exit to a missing page"] += 1
                continue
            target = canonical[target.key]
            next_choices = [choice for choice, _ in target.exits]
            if not low <= len(choices) <= high:
                source.dropped["page without 2-4 exits"] += 1
            elif not (low <= len(next_choices) <= high):
                source.dropped["next page without 2-4 exits"] += 1
            elif len(set(choices)) != len(choices):
                source.dropped["page with repeated exits"] += 1
            else:
                source.steps.append(Step(
                    id=f"fifi/page{page.number}>page{target.number}", genre="slice_of_life", premise=PREMISE,
                    lore=LORE, scene=page.text, choices=choices, chosen=index, next_scene=target.text,
                    next_choices=next_choices,
                ))
    return source
