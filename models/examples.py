"""From steps to model inputs: the story so far as a prompt, the next scene as the target."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from data.steps import Step
from engine.prompt_format import StoryContext, Turn, fit_context, render_prompt, render_target


@dataclass(frozen=True)
class Example:
    id: str
    genre: str
    context: StoryContext
    target: str
    reference: str  # the reference next scene's narration, for evaluation


def step_context(step: Step) -> StoryContext:
    path = [Turn(item.scene, item.choices[item.chosen]) for item in step.history]
    path.append(Turn(step.scene, step.action))
    return StoryContext(step.genre, step.premise, tuple(step.lore), "", tuple(path))


def step_example(step: Step) -> Example:
    return Example(step.id, step.genre, step_context(step),
                   render_target(step.next_scene, step.next_choices, step.ending), step.next_scene)


def opening_example(step: Step) -> Example:
    """The opening scene of a story, written from genre, premise and lore alone."""
    opening = step.history[0] if step.history else None
    scene, choices = (opening.scene, opening.choices) if opening else (step.scene, step.choices)
    story = step.id.split("/")[0] if "/" in step.id else step.id
    return Example(f"{story}/opening", step.genre, StoryContext(step.genre, step.premise, tuple(step.lore)),
                   render_target(scene, choices, None), scene)


def examples_from_steps(steps: Iterable[Step], openings: bool = True) -> list[Example]:
    """One example per step, plus one opening per story (steps with no history start a story)."""
    out: list[Example] = []
    seen_openings: set[tuple[str, str]] = set()
    for step in steps:
        out.append(step_example(step))
        if openings and not step.history and (step.premise, step.scene) not in seen_openings:
            seen_openings.add((step.premise, step.scene))
            out.append(opening_example(step))
    return out


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example: for a causal model ``input_ids`` holds prompt + target and ``labels`` masks
    the prompt with -100; for a seq2seq model ``input_ids`` is the prompt and ``labels`` the target."""

    input_ids: list[int]
    labels: list[int]


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fitted_prompt(tokenizer: PreTrainedTokenizerBase, context: StoryContext, budget: int) -> list[int]:
    """The prompt's ids, fitted to ``budget`` tokens (the left end is cut if even the minimum is too long)."""
    fitted = fit_context(context, lambda text: count_tokens(tokenizer, text), budget)
    ids: list[int] = tokenizer(render_prompt(fitted), add_special_tokens=False)["input_ids"]
    return ids[-budget:] if budget > 0 else []


def encode(tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int, seq2seq: bool,
           prompt_loss: bool = False) -> Encoded:
    """Token ids of an example. ``prompt_loss`` (causal models, training only) also scores the prompt."""
    target: list[int] = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    target = target[: max_length // 2] if not seq2seq else target[:max_length]
    if seq2seq:
        return Encoded(fitted_prompt(tokenizer, example.context, max_length), target)
    prompt = fitted_prompt(tokenizer, example.context, max_length - len(target))
    return Encoded(prompt + target, (prompt if prompt_loss else [-100] * len(prompt)) + target)


def generation_prompts(tokenizer: PreTrainedTokenizerBase, contexts: Sequence[StoryContext], max_length: int,
                       max_new_tokens: int, seq2seq: bool) -> list[list[int]]:
    """Prompts for generation, each fitted so that prompt + answer fits the model's window."""
    budget = max_length if seq2seq else max(8, max_length - max_new_tokens)
    return [fitted_prompt(tokenizer, context, budget) for context in contexts]
