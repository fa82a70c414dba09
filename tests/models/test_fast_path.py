"""The llama.cpp decoding path: GGUF conversion parity with transformers, the grammar on the fast path,
streaming, the conversion cache and its record on the model version, the sampling steps against transformers'.

Models are tiny and real: the session's trained GPT-2 preset, and a randomly initialised Llama (the SmolLM2
family: grouped-query attention, tied embeddings) saved as a storyteller folder by the test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor, TopPLogitsWarper

from data.tracking import TrackingTarget
from engine.ports import WriteRequest
from engine.prompt_format import StoryContext, parse_output
from models.config import Sampling
from models.examples import generation_prompts
from models.fast_decoder import native_bf16
from models.fast_job import GGUF_TAG, Decoding, fast_storyteller, weight_type
from models.fast_writer import FastStoryteller
from models.registry import load_storyteller
from models.sampling import nucleus, penalise_repeats
from models.storyteller import Storyteller
from models.train_job import TrainOutcome
from models.training import new_storyteller
from models.writer import ModelWriter
from tests.models.conftest import MODEL, tiny
from tests.models.test_base_models import save_checkpoint

pytest.importorskip("llama_cpp", reason="the llama.cpp path needs llama-cpp-python (make setup builds it)")

CONTEXT = StoryContext("mecha", "A rookie pilot defends a drowned city.", ("Aoi-senpai leads the squad.",), "",
                       ())
FREE = Sampling(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=48, constrained=True)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Storyteller:
    """A tiny random Llama with the story markers added, saved and loaded back as any storyteller is."""
    folder = tmp_path_factory.mktemp("llama")
    texts = ["You run to the hangar as the sirens wail.", "The tide rises over the city; you climb."] * 20
    base = save_checkpoint(folder / "base", "llama", texts)
    config = tiny(base_model=str(base), architecture=None, max_length=256, window=256)
    fresh = new_storyteller(config, texts, None)
    return Storyteller.load(fresh.save(folder / "storyteller"), "llama/1")


@pytest.fixture(scope="module")
def gpt2(trained: TrainOutcome, tracking: TrackingTarget) -> Storyteller:
    return load_storyteller(tracking, f"models:/{MODEL}/{trained.registered.version}")


def answer_ids(teller: Storyteller) -> list[int]:
    prompt = generation_prompts(teller.tokenizer, [CONTEXT], teller.window, 64, False)[0]
    answer = teller.tokenizer("<|scene|>You climb into the cockpit as the sirens wail over the flooded streets.",
                              add_special_tokens=False)["input_ids"]
    return list(prompt) + list(answer)


def transformers_log_probs(teller: Storyteller, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = teller.model(torch.tensor([ids])).logits[0].double()
    rows = torch.log_softmax(logits, -1)
    return rows[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize(("weights", "tolerance"), [("f32", 2e-3), ("bf16", 0.01), ("q8_0", 0.15)])
def test_the_fast_path_scores_the_same_tokens_as_transformers(family: str, weights: str, tolerance: float,
                                                               request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    teller: Storyteller = request.getfixturevalue(family)
    fast = fast_storyteller(teller, Decoding("llama.cpp", weights, 2, tmp_path))
    ids = answer_ids(teller)
    gap = np.abs(fast.model.log_probs(ids) - transformers_log_probs(teller, ids))
    # f32 is the same arithmetic in another order; bf16 rounds each weight to 8 significant bits (the default
    # where the CPU multiplies bf16), q8_0 to 8-bit steps of its block's largest (the default elsewhere).
    assert gap.mean() < tolerance and gap.max() < 10 * tolerance, (gap.mean(), gap.max())


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_grammar_holds_on_the_fast_path(family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    teller: Storyteller = request.getfixturevalue(family)
    fast = fast_storyteller(teller, Decoding("llama.cpp", "q8_0", 4, tmp_path))
    # An untrained (or barely trained) model at temperature 1: only the grammar makes these parse.
    answers = fast.write([CONTEXT] * 6, FREE, seed=7, must_end=[True, False] * 3, may_end=[True, False] * 3)
    parsed = [parse_output(answer) for answer in answers]  # raises on any malformed answer
    assert [p.is_ending for p in parsed] == [True, False] * 3
    assert all(2 <= len(p.choices) <= 4 for p in parsed if not p.is_ending)


def test_a_seed_replays_a_scene_and_the_answer_streams_as_it_grows(llama: Storyteller, tmp_path: Path) -> None:
    fast = fast_storyteller(llama, Decoding("llama.cpp", "q8_0", 2, tmp_path))
    seen: list[tuple[int, str]] = []
    [first] = fast.write([CONTEXT], FREE, seed=3, on_text=lambda row, text: seen.append((row, text)))
    [again] = fast.write([CONTEXT], FREE, seed=3)
    assert first == again
    assert len(seen) > 5 and {row for row, _ in seen} == {0}
    assert all(first.startswith(text) for _, text in seen) and seen[-1][1] == first


def test_conversion_is_cached_by_content_and_recorded_on_the_model_version(
        trained: TrainOutcome, tracking: TrackingTarget, tmp_path: Path) -> None:
    decoding = Decoding("llama.cpp", cache=tmp_path / "gguf")  # the default weights: auto
    weights = "bf16" if native_bf16() else "q8_0"

    async def load() -> ModelWriter:
        return await ModelWriter.load(tracking, f"models:/{MODEL}/{trained.registered.version}", decoding)

    first = asyncio.run(load())
    second = asyncio.run(load())
    assert first.decoder == second.decoder == "llama.cpp"
    assert isinstance(first.storyteller, FastStoryteller) and isinstance(second.storyteller, FastStoryteller)
    assert "converted in" in first.storyteller.gguf_note and "converted in" not in second.storyteller.gguf_note
    [file] = (tmp_path / "gguf").glob("*.gguf")
    assert file.name.endswith(f".{weights}.gguf")
    from mlflow import MlflowClient

    tag = MlflowClient(tracking.uri).get_model_version(MODEL, str(trained.registered.version)).tags[GGUF_TAG]
    assert tag.startswith(f"llama.cpp {weights} ")
    [scene] = asyncio.run(second.write([WriteRequest(CONTEXT)]))
    parse_output(scene.text)


def test_auto_weights_are_bf16_where_llama_cpp_multiplies_bf16_and_q8_0_elsewhere(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("models.fast_decoder.native_bf16", lambda: True)
    assert weight_type("auto") == "bf16" and weight_type("q8_0") == "q8_0"
    monkeypatch.setattr("models.fast_decoder.native_bf16", lambda: False)
    caplog.set_level(logging.WARNING)
    assert weight_type("auto") == "q8_0" and weight_type("f32") == "f32" and not caplog.text
    assert weight_type("bf16") == "bf16"  # asked for by name: kept, with a warning that it is slow here
    assert "widened in software" in caplog.text


def test_the_build_multiplies_bf16_where_the_cpu_can() -> None:
    """``make setup`` turns on each CPU extension /proc/cpuinfo reports: with AVX512-BF16 there, llama.cpp
    must have it (the portable build without it wrote 1.5x slower)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare the build with")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    assert native_bf16() is ("avx512_bf16" in flags)


def test_auto_falls_back_to_transformers_and_says_why(trained: TrainOutcome, tracking: TrackingTarget,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import models.fast_job as fast_job
    from models.gguf_export import FastPathUnavailableError

    def unavailable(*_: object) -> FastStoryteller:
        raise FastPathUnavailableError("the llama.cpp path needs llama-cpp-python")

    monkeypatch.setattr("models.writer.fast_storyteller", unavailable)
    assert fast_job.fast_storyteller is not unavailable
    caplog.set_level(logging.WARNING)
    writer = asyncio.run(ModelWriter.load(tracking, f"models:/{MODEL}/{trained.registered.version}",
                                          Decoding("auto", "q8_0", 2, tmp_path)))
    assert writer.decoder == "transformers" and isinstance(writer.storyteller, Storyteller)
    assert "writes with transformers (slower): the llama.cpp path needs llama-cpp-python" in caplog.text
    with pytest.raises(FastPathUnavailableError):
        asyncio.run(ModelWriter.load(tracking, f"models:/{MODEL}/{trained.registered.version}",
                                     Decoding("llama.cpp", "q8_0", 2, tmp_path)))


def test_sampling_steps_match_transformers() -> None:
    rng = np.random.default_rng(0)
    # Peaked logits (tokens above 1e-3 hold top_p) and flat ones over a larger vocabulary (the nucleus reaches
    # below 1e-3: the lower floors are sorted too).
    for scale, size in [(3.0, 500)] * 20 + [(0.5, 5000)] * 20:
        logits = rng.normal(0, scale, size)
        seen = rng.integers(0, size, 40)
        ours = penalise_repeats(logits.copy(), seen, 1.3)
        theirs = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor(seen)[None], torch.tensor(logits)[None])[0]
        assert np.allclose(ours, theirs.numpy())
        probs = np.exp(ours - ours.max())
        probs /= probs.sum()
        kept, weights = nucleus(probs, 0.9)
        warped = TopPLogitsWarper(0.9)(torch.tensor(seen)[None], torch.tensor(ours)[None])[0]
        assert set(kept.tolist()) == set(torch.nonzero(torch.isfinite(warped)).flatten().tolist())
        assert weights.sum() == pytest.approx(1.0)


def test_prompt_prefixes_are_reused_from_the_batch_and_from_recent_prompts() -> None:
    from models.fast_decoder import PrefixCache, plan_prefill

    cache = PrefixCache(max_bytes=100)
    story = list(range(1000, 1040))
    cache.add(tuple(story), b"x" * 40)  # a scene written a moment ago: its prompt and answer
    branches = [[*story, 1, 2, 3, 7], [*story, 1, 2, 3, 8], [5] * 30 + [9], [5] * 30 + [10]]
    plans = plan_prefill(branches, cache)
    # The first reuses the cached state; the second shares more with the first (43 tokens) and copies it in a
    # second wave; the last two share 30 tokens: the third computes them, the fourth copies them.
    assert [(p.shared, p.cached is not None, p.source, p.wave) for p in plans] == [
        (40, True, None, 0), (43, False, 0, 1), (0, False, None, 0), (30, False, 2, 1)]
    cache.add((*story, 1, 2), b"y" * 50)  # a longer prompt of the same story replaces its prefix
    assert list(cache.entries) == [(*story, 1, 2)]
    cache.add((7,) * 20, b"z" * 60)  # over 100 bytes: the least recently used goes
    assert list(cache.entries) == [(7,) * 20]


def scripted(tokens: list[int], log: list[str], name: str, then: Callable[[], None] | None = None,
             ) -> Callable[[np.ndarray], int]:
    """A picker that writes ``tokens`` whatever the logits say, logging each step (``then`` after the last)."""
    left = list(tokens)

    def pick(logits: np.ndarray) -> int:
        log.append(name)
        token = left.pop(0)
        if not left and then is not None:
            then()
        return token
    return pick


def test_sequences_join_as_slots_free_and_a_cancelled_one_leaves(llama: Storyteller, tmp_path: Path) -> None:
    from models.fast_decoder import Job

    fast = fast_storyteller(llama, Decoding("llama.cpp", "q8_0", 2, tmp_path))
    model, stop = fast.model, llama.end_id
    prompt = generation_prompts(llama.tokenizer, [CONTEXT], llama.window, 64, False)[0]
    steps: list[str] = []
    text = [int(t) for t in llama.tokenizer("You climb", add_special_tokens=False)["input_ids"]]
    long = Job(list(prompt), scripted([*text * 10, stop], steps, "long"), 64, stop)
    short = Job(list(prompt), scripted([*text, stop], steps, "short"), 64, stop)
    later = Job(list(prompt), scripted([*text, stop], steps, "later"), 64, stop)
    doomed = Job(list(prompt), lambda logits: stop, 64, stop)
    # The doomed sequence is given up by its caller as it picks its last scripted token (as a deadline would).
    doomed.pick = scripted([*text, text[0]], steps, "doomed", then=lambda: doomed.result.cancel())
    for job in (long, short, doomed, later):
        model.submit(job)
    assert len(long.result.result(timeout=60)) == 10 * len(text) + 1
    assert short.result.result(timeout=60) == [*text, stop] and later.result.result(timeout=60) == [*text, stop]
    assert doomed.result.cancelled() and steps.count("doomed") == len(text) + 1
    # Two slots: "doomed" takes the slot "short" frees and "later" the one "doomed" leaves, while "long" is
    # still being written (each joins between two steps, not after the whole batch).
    last_long = len(steps) - 1 - steps[::-1].index("long")
    assert steps.index("doomed") > steps.index("short") and steps.index("later") < last_long
    assert set(steps[: 2]) == {"long", "short"}
    assert model.counters.rows_stepped >= model.counters.steps + 3 * len(text)  # steps of two sequences


def test_only_the_reusable_part_of_an_answer_is_cached_and_a_taken_branch_drops_its_siblings(
        llama: Storyteller, tmp_path: Path) -> None:
    from models.fast_decoder import Job

    fast = fast_storyteller(llama, Decoding("llama.cpp", "q8_0", 4, tmp_path))
    model, stop = fast.model, llama.end_id
    choices = fast._grammar(64).choices
    prompt = [int(t) for t in generation_prompts(llama.tokenizer, [CONTEXT], llama.window, 64, False)[0]]
    narrations = [[int(t) for t in llama.tokenizer(text, add_special_tokens=False)["input_ids"]]
                  for text in ("You run to the hangar.", "The tide rises.", "Aoi-senpai waves you over.")]
    jobs = [Job(list(prompt), scripted([*narration, choices, 11, stop], [], "branch"), 64, stop, frozenset({choices}))
            for narration in narrations]
    for job in jobs:
        model.submit(job)
    for job in jobs:
        job.result.result(timeout=60)
    cached = set(model.prefixes.entries)
    assert cached == {(*prompt, *narration) for narration in narrations}  # the choices are never cached
    # The next scene continues the second branch: its prompt reuses that state, and the other two go.
    chosen = [*prompt, *narrations[1], 7, 8]
    [after] = model.run([chosen], lambda row, logits: stop, 4, stop)
    assert after == [stop]
    assert model.prefixes.dropped_branches == 2
    assert not any(entry[: len(prompt) + len(narrations[0])] == (*prompt, *narrations[0])
                   for entry in model.prefixes.entries)


def test_the_queue_overlaps_calls_only_when_continuous_batching_is_on(llama: Storyteller, tmp_path: Path) -> None:
    from engine.ports import overlapping_slots

    fast = fast_storyteller(llama, Decoding("llama.cpp", "q8_0", 3, tmp_path))
    assert overlapping_slots(ModelWriter(fast, decoder="llama.cpp")) == 0  # the default: batch by batch
    assert overlapping_slots(ModelWriter(fast, decoder="llama.cpp", continuous=True)) == 3
    assert overlapping_slots(ModelWriter(llama, continuous=True)) == 0  # transformers never overlaps


def test_live_sequences_move_down_to_consecutive_slots_and_go_on_as_if_alone(
        llama: Storyteller, tmp_path: Path) -> None:
    """llama.cpp computes a step once per run of consecutive slots: a sequence above a freed slot moves down
    (its KV stream copied), and its next tokens' logits are the ones it would have had alone."""
    from models.fast_decoder import Job

    fast = fast_storyteller(llama, Decoding("llama.cpp", "f32", 4, tmp_path))
    model, stop = fast.model, llama.end_id
    prompts = [[int(t) for t in generation_prompts(llama.tokenizer, [replace(CONTEXT, premise=premise)],
                                                     llama.window, 64, False)[0]]
               for premise in ("A pilot.", "A rookie pilot defends a city.", "Two pilots race.", "The last mech.")]
    text = [int(t) for t in llama.tokenizer("You climb the tower", add_special_tokens=False)["input_ids"]]
    lengths = [1, 2, 3, 6]  # the first three end early, under the last: it moves from slot 3 down to 0
    seen: list[np.ndarray] = []

    def recording(tokens: list[int]) -> Callable[[np.ndarray], int]:
        left = list(tokens)

        def pick(logits: np.ndarray) -> int:
            seen.append(logits.copy())
            return left.pop(0)
        return pick

    slots_a_step: list[list[int]] = []
    decode = model._decode

    def watched(entries: Sequence[tuple[int, int, int, bool]]) -> None:
        if all(position >= len(prompts[0]) for _, position, _, _ in entries):  # steps, not prompts
            slots_a_step.append([slot for _, _, slot, _ in entries])
        decode(entries)

    model._decode = watched  # type: ignore[method-assign]
    jobs = [Job(prompt, scripted([*text * n, stop], [], "short"), 64, stop) for prompt, n in zip(
        prompts[:3], lengths, strict=False)]
    last = [*text * lengths[3], stop]
    jobs.append(Job(prompts[3], recording(last), 64, stop))
    for job in jobs:
        model.submit(job)
    assert [len(job.result.result(timeout=60)) for job in jobs] == [len(text) * n + 1 for n in lengths]
    assert model.counters.moves >= 1
    assert all(slots == list(range(len(slots))) for slots in slots_a_step)  # consecutive, ascending
    batched, seen[:] = list(seen), []
    model.prefixes.entries.clear()
    alone = Job(prompts[3], recording(last), 64, stop)
    model.submit(alone).result(timeout=60)
    assert len(seen) == len(batched)
    assert max(float(np.abs(a - b).max()) for a, b in zip(batched, seen, strict=True)) < 1e-3


def test_a_reused_prefix_gives_the_logits_of_a_prompt_computed_whole(llama: Storyteller, tmp_path: Path) -> None:
    """A branch that copies its sibling's prompt (inside llama.cpp) or restores a cached one (from host memory)
    starts its answer from the same logits as the same prompt computed from its first token."""
    fast = fast_storyteller(llama, Decoding("llama.cpp", "f32", 4, tmp_path))
    model, stop = fast.model, llama.end_id
    prompt = [int(t) for t in generation_prompts(llama.tokenizer, [CONTEXT], llama.window, 64, False)[0]]
    branches = [[*prompt, *llama.tokenizer(f" {word}", add_special_tokens=False)["input_ids"]]
                for word in ("climb", "swim", "wait")]
    first: dict[str, list[np.ndarray]] = {"batch": [], "whole": [], "cached": []}

    def run(kind: str, prompts: list[list[int]]) -> None:
        model.run(prompts, lambda row, logits: first[kind].append(logits.copy()) or stop, 1, stop)

    reused = model.counters.reused_tokens
    run("batch", branches)
    assert model.counters.reused_tokens - reused >= 2 * len(prompt)  # the second and third copied the first
    for branch in branches:
        model.prefixes.entries.clear()
        model.prefixes.size = 0
        run("whole", [branch])
    model.prefixes.entries.clear()
    model.prefixes.size = 0
    run("whole", [prompt])  # cached: the prompt alone, then each branch restores it and computes its word
    first["whole"].pop()
    for branch in branches:
        run("cached", [branch])
    for kind in ("batch", "cached"):
        assert max(float(np.abs(a - b).max()) for a, b in zip(first[kind], first["whole"], strict=True)) < 1e-3


def test_a_cached_answer_is_reused_with_its_oldest_scene_cut_out() -> None:
    from models.fast_decoder import PrefixCache, Reuse, plan_prefill, reuse

    lore, oldest, last = list(range(100, 120)), list(range(500, 530)), list(range(700, 740))
    answer = [*lore, *oldest, *last]  # the last prompt (lore, oldest scene) and the answer written to it
    following = [*lore, *last, 9, 9]  # the window dropped the oldest scene; the action taken follows
    assert reuse(answer, following, cuts=True) == Reuse(shared=60, cut_at=20, cut=30)
    assert reuse(answer, following, cuts=False) == Reuse(shared=20)
    assert reuse(answer, [*lore, *last[:5], 1, 2], cuts=True) == Reuse(shared=20)  # too little after the cut
    cache = PrefixCache(max_bytes=1000, cuts=True)
    cache.add(tuple(answer), b"x" * 10, prompt_length=50)
    [plan] = plan_prefill([following], cache)
    assert (plan.shared, plan.cut_at, plan.cut, plan.cached) == (60, 20, 30, b"x" * 10)


@pytest.mark.parametrize(("family", "cuts"), [("llama", True), ("gpt2", False)])
def test_only_a_model_with_rotary_positions_reuses_prompts_with_a_cut(family: str, cuts: bool,
                                                                      request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    """GPT-2 adds learned positions to its inputs: moving its cells down would leave them at their old
    places, so its prompts are reused only by their common start."""
    teller: Storyteller = request.getfixturevalue(family)
    assert fast_storyteller(teller, Decoding("llama.cpp", "q8_0", 2, tmp_path)).model.prefixes.cuts is cuts


def test_a_prompt_reused_with_a_cut_goes_on_from_consecutive_positions(llama: Storyteller, tmp_path: Path) -> None:
    """The cells after the cut move down (their keys rotated to the new positions): the prompt's own tokens
    after them are computed at the right places, and its first logits stay close to the prompt computed whole
    (not equal: the kept cells were computed with the cut block in view, which is the point of reusing them)."""
    fast = fast_storyteller(llama, Decoding("llama.cpp", "f32", 2, tmp_path))
    model, stop = fast.model, llama.end_id
    assert model.prefixes.cuts

    def ids(text: str) -> list[int]:
        return [int(t) for t in llama.tokenizer(text, add_special_tokens=False)["input_ids"]]

    lore = ids("<|genre|>mecha<|premise|>A rookie pilot defends a drowned city.<|history|><|scene|>")
    oldest, last = ids(" The sirens wail over the harbour.<|action|>Run<|scene|>"), ids(
        " You run to the hangar as the tide rises over the city and the sirens wail.")
    following = [*lore, *last, *ids("<|action|>Climb")]
    first: dict[str, np.ndarray] = {}

    def run(kind: str, prompt: list[int]) -> None:
        def pick(row: int, logits: np.ndarray) -> int:
            first[kind] = logits.copy()
            return stop
        model.run([prompt], pick, 1, stop)

    run("before", [*lore, *oldest, *last])
    computed = model.counters.prompt_tokens
    run("cut", following)
    assert model.counters.prompt_tokens - computed == len(following) - len(lore) - len(last)
    assert int(model.lib.llama_memory_seq_pos_max(model.memory, 0)) == len(following) - 1
    model.prefixes = type(model.prefixes)(1 << 20, cuts=True)
    run("whole", following)
    run("kept", [*lore, *oldest, *following[len(lore):]])  # the oldest scene left in instead of cut out
    cut, whole, kept = first["cut"], first["whole"], first["kept"]
    assert np.abs(cut - whole).max() < np.abs(kept - whole).max()
