"""The prompt format: how a story so far is written for the model, and how its answer is read back.

Training, evaluation and the engine all use this one module, and every registered model records the
``PROMPT_FORMAT_VERSION`` it was trained with; loading a model with another version fails clearly.

A prompt (version 1)::

    <|genre|>mecha<|premise|>One sentence.<|lore|>Fact one.\\nFact two.<|summary|>Older events.
    <|history|><|scene|>An earlier scene.<|action|>The action taken there.<|scene|>The current scene.
    <|action|>The chosen action

(``<|summary|>`` and ``<|history|>`` only when there is something in them; an opening scene has no
``<|history|>`` at all.) The model answers with the next scene and stops at ``<|end|>``::

    <|scene|>The next scene.<|choices|>First choice\\nSecond choice\\nThird choice<|end|>
    <|scene|>A closing scene.<|ending|>good<|end|>
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.errors import MalformedOutputError
from engine.story import EndingKind

PROMPT_FORMAT_VERSION = 1

GENRE = "<|genre|>"
PREMISE = "<|premise|>"
LORE = "<|lore|>"
SUMMARY = "<|summary|>"
HISTORY = "<|history|>"
SCENE = "<|scene|>"
ACTION = "<|action|>"
CHOICES = "<|choices|>"
CHOICE = "<|choice|>"
ENDING = "<|ending|>"
END = "<|end|>"
PAD = "<|pad|>"

SPECIAL_TOKENS: tuple[str, ...] = (
    PAD, END, GENRE, PREMISE, LORE, SUMMARY, HISTORY, SCENE, ACTION, CHOICES, CHOICE, ENDING,
)
CHOICES_PER_SCENE = (2, 4)

# Numbering or bullets a model may put in front of a choice: "1.", "2)", "-", "*".
_CHOICE_PREFIX = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s*")


@dataclass(frozen=True)
class Turn:
    """A scene of the story so far and the action taken in it."""

    scene: str
    action: str


@dataclass(frozen=True)
class StoryContext:
    """Everything the model sees. ``path`` ends with the current scene and the chosen action; it is empty
    when the model is to write an opening scene."""

    genre: str
    premise: str
    lore: tuple[str, ...] = ()
    summary: str = ""
    path: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class ParsedScene:
    narration: str
    choices: tuple[str, ...]
    ending: EndingKind | None

    @property
    def is_ending(self) -> bool:
        return self.ending is not None


def render_prompt(context: StoryContext) -> str:
    parts = [GENRE, context.genre, PREMISE, context.premise]
    if context.lore:
        parts += [LORE, "\n".join(context.lore)]
    if context.summary:
        parts += [SUMMARY, context.summary]
    if context.path:
        parts.append(HISTORY)
        for turn in context.path:
            parts += [SCENE, turn.scene, ACTION, turn.action]
    return "".join(parts)


def render_target(narration: str, choices: Sequence[str], ending: EndingKind | str | None) -> str:
    """What the model should answer: the next scene, then its choices or its ending, then ``<|end|>``."""
    if choices:
        tail = CHOICES + "".join(CHOICE + choice for choice in choices)
    else:  # an ending; the step format may leave its kind unknown
        tail = ENDING + str(ending or EndingKind.NEUTRAL)
    return f"{SCENE}{narration}{tail}{END}"


def fit_context(context: StoryContext, count_tokens: Callable[[str], int], budget: int) -> StoryContext:
    """Shrink a context until its prompt takes at most ``budget`` tokens.

    What goes first is what matters least for the next scene: the oldest turns of the path, then the
    summary, then lore facts from the last. The current scene and action are never dropped; as a last
    resort the current scene loses words from its start (its end leads into the action).
    """

    def fits(candidate: StoryContext) -> bool:
        return count_tokens(render_prompt(candidate)) <= budget

    while not fits(context) and len(context.path) > 1:
        context = replace(context, path=context.path[1:])
    if not fits(context) and context.summary:
        context = replace(context, summary="")
    while not fits(context) and context.lore:
        context = replace(context, lore=context.lore[:-1])
    while not fits(context) and context.path:
        current = context.path[-1]
        words = current.scene.split()
        if len(words) <= 1:
            break
        shorter = Turn(" ".join(words[max(1, len(words) // 5):]), current.action)
        context = replace(context, path=(*context.path[:-1], shorter))
    return context


def _clean_choice(line: str) -> str:
    return _CHOICE_PREFIX.sub("", line).strip()


def parse_output(text: str) -> ParsedScene:
    """Read a model's answer; ``MalformedOutputError`` says what is wrong.

    A good answer is narration, then 2-4 distinct non-empty choices or an ending of a known kind, then
    ``<|end|>``. Whatever comes after ``<|end|>`` is ignored; a leading ``<|scene|>`` is optional.
    """
    body = text.strip()
    if END not in body:
        raise MalformedOutputError("no <|end|> marker (the output was cut off or never finished)", text)
    body = body.split(END, 1)[0]
    body = body.removeprefix(SCENE)
    if SCENE in body:
        raise MalformedOutputError("more than one scene in one answer", text)
    if CHOICES in body and ENDING in body:
        raise MalformedOutputError("both choices and an ending", text)
    if CHOICES in body:
        narration, choice_text = body.split(CHOICES, 1)
        ending: EndingKind | None = None
        choices = tuple(c for c in (_clean_choice(part) for part in choice_text.split(CHOICE)) if c)
    elif ENDING in body:
        narration, kind = body.split(ENDING, 1)
        try:
            ending = EndingKind(kind.strip().lower())
        except ValueError:
            raise MalformedOutputError(f"unknown ending kind {kind.strip()!r}", text) from None
        choices = ()
    else:
        raise MalformedOutputError("neither <|choices|> nor <|ending|>", text)
    narration = narration.strip()
    if not narration:
        raise MalformedOutputError("no narration", text)
    if any(marker in narration for marker in SPECIAL_TOKENS):
        raise MalformedOutputError("a story marker inside the narration", text)
    if ending is None:
        low, high = CHOICES_PER_SCENE
        if not low <= len(choices) <= high:
            raise MalformedOutputError(f"{len(choices)} choice(s), needs {low}-{high}", text)
        if len({c.casefold() for c in choices}) != len(choices):
            raise MalformedOutputError("repeated choices", text)
        if any(marker in choice for choice in choices for marker in SPECIAL_TOKENS):
            raise MalformedOutputError("a story marker inside a choice", text)
    return ParsedScene(narration, choices, ending)


def partial_narration(text: str) -> str:
    """The narration of an answer still being written, as far as it can be shown: everything after the scene
    marker and before the choices, the ending or any other marker (markers never reach a player)."""
    body = text.lstrip().removeprefix(SCENE)
    cut = min((body.index(marker) for marker in SPECIAL_TOKENS if marker in body), default=len(body))
    body = body[:cut]
    for marker in SPECIAL_TOKENS:  # a marker half-decoded at the end ("<|cho") is not shown either
        for size in range(len(marker) - 1, 0, -1):
            if body.endswith(marker[:size]):
                body = body[: -size]
                break
    return body.strip()
