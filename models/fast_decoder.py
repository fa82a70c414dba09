"""The llama.cpp decoding path: a storyteller's weights as GGUF, run by llama.cpp through its C API.

Why not transformers' ``generate``: on 2 cores it spends ~40 ms a token, mostly per-step Python and operator
overhead, where the arithmetic needs a few. llama.cpp runs the same weights in one C call a step.

Only the forward pass moves: the prompt is built and tokenised by the storyteller's own tokenizer, and every
token is chosen here in Python with the same grammar (``models.grammar.SceneGrammar.keep_mask``) and the
same sampling steps (``models.sampling``) as the transformers path. Several sequences decode together in one
batch (one llama.cpp sequence each, sharing one KV pool), and a sequence leaves the batch as soon as it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.gguf_export import FastPathUnavailableError

log = logging.getLogger(__name__)

_INIT = threading.Lock()
_READY: dict[str, Any] = {}


def _llama() -> Any:
    """The llama_cpp bindings, imported (and the backend initialised, its logging silenced) once."""
    with _INIT:
        if "lib" not in _READY:
            try:
                import llama_cpp
            except ImportError as exc:  # also the shared library failing to load
                raise FastPathUnavailableError(
                    "the llama.cpp path needs llama-cpp-python: `make setup` builds it (see the README)") from exc

            def to_log(level: int, text: bytes, data: Any) -> None:
                if level >= 4 and text:  # GGML_LOG_LEVEL_ERROR; the rest is chatter about tensors
                    log.debug("llama.cpp: %s", text.decode(errors="replace").rstrip())

            quiet = llama_cpp.llama_log_callback(to_log)
            _READY["callback"] = quiet  # referenced, or ctypes frees it while llama.cpp still calls it
            llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _READY["lib"] = llama_cpp
        return _READY["lib"]


@dataclass
class _Row:
    """One sequence being written: its slot in the KV pool, every token it has seen, what it has written."""

    slot: int
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    done: bool = False

    @property
    def position(self) -> int:
        return len(self.prompt) + len(self.generated)


Picker = Callable[[int, np.ndarray], int]  # (row, logits) -> the row's next token


class LlamaCppModel:
    """A GGUF model loaded in llama.cpp with a KV pool for ``slots`` sequences of ``window`` tokens each."""

    def __init__(self, path: Path, slots: int = 8, window: int = 1024, threads: int | None = None,
                 cache_bytes: int = 512 << 20) -> None:
        lib = _llama()
        self.lib = lib
        self.path = path
        self.slots = slots
        self.window = window
        params = lib.llama_model_default_params()
        params.use_mmap = True
        self.model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise FastPathUnavailableError(f"{path}: llama.cpp cannot load this GGUF file")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        context = lib.llama_context_default_params()
        context.n_ctx = slots * window
        context.n_batch = slots * window  # a whole batch of prompts goes in one call
        context.n_ubatch = 512
        context.n_seq_max = slots
        # One KV stream per sequence: attention then spans only the sequence's own cells (a unified pool made
        # every token attend, masked, over all of them: 2.3x slower a step at 8 sequences, measured).
        context.kv_unified = False
        context.flash_attn_type = 1  # enabled: faster prefill and batched steps on CPU, measured
        context.n_threads = context.n_threads_batch = threads or max(1, os.cpu_count() or 1)
        context.no_perf = True
        self.context = lib.llama_init_from_model(self.model, context)
        if not self.context:
            lib.llama_model_free(self.model)
            raise FastPathUnavailableError(f"{path}: llama.cpp cannot make a context of {slots} x {window} tokens")
        self.memory = lib.llama_get_memory(self.context)
        self.batch = lib.llama_batch_init(slots * window, 0, 1)
        self.lock = threading.Lock()  # one decode at a time: the context is not thread-safe
        self.prefixes = PrefixCache(cache_bytes)

    def close(self) -> None:
        if self.context:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.context)
            self.lib.llama_model_free(self.model)
            self.context = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the library may already be gone
            self.close()

    # --- the batch ----------------------------------------------------------------------------
    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Feed (token, position, slot, wants logits) entries in one ``llama_decode``."""
        batch = self.batch
        for index, (token, position, slot, wants) in enumerate(entries):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = slot
            batch.logits[index] = wants
        batch.n_tokens = len(entries)
        code = self.lib.llama_decode(self.context, batch)
        if code != 0:
            raise FastPathUnavailableError(f"llama.cpp could not decode a batch of {len(entries)} tokens (code {code})")

    def _logits(self, index: int) -> np.ndarray:
        pointer = self.lib.llama_get_logits_ith(self.context, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _check(self, prompts: Sequence[Sequence[int]]) -> None:
        if len(prompts) > self.slots:
            raise FastPathUnavailableError(f"{len(prompts)} sequences at once, but the pool holds {self.slots}")
        for prompt in prompts:
            if not prompt or len(prompt) >= self.window:
                raise FastPathUnavailableError(f"a prompt of {len(prompt)} tokens does not fit a {self.window} window")

    # --- scoring and writing ------------------------------------------------------------------
    def log_probs(self, ids: Sequence[int]) -> np.ndarray:
        """log p(ids[i] | ids[:i]) for i >= 1: what the parity test compares with transformers."""
        self._check([ids])
        with self.lock:
            self.lib.llama_memory_clear(self.memory, True)
            self._decode([(token, position, 0, True) for position, token in enumerate(ids)])
            rows = np.stack([self._logits(i) for i in range(len(ids) - 1)]).astype(np.float64)
        rows -= rows.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(rows).sum(axis=1))
        return np.array([rows[i, ids[i + 1]] - log_norm[i] for i in range(len(ids) - 1)])

    # --- prefixes -----------------------------------------------------------------------------
    def _state(self, slot: int) -> Any:
        size = int(self.lib.llama_state_seq_get_size(self.context, slot))
        buffer = (ctypes.c_uint8 * size)()
        self.lib.llama_state_seq_get_data(self.context, buffer, size, slot)
        return buffer

    def _restore(self, state: Any, slot: int, keep: int) -> None:
        """Put a saved sequence into ``slot`` and keep its first ``keep`` positions."""
        if not self.lib.llama_state_seq_set_data(self.context, state, len(state), slot):
            raise FastPathUnavailableError("llama.cpp could not restore a cached prompt")
        self.lib.llama_memory_seq_rm(self.memory, slot, keep, -1)

    def _prefill(self, rows: list[_Row]) -> list[np.ndarray]:
        """Put every prompt in the KV cache and return the logits after each. A prompt that shares its start
        with an earlier prompt (a cached one, or one of this batch: the branches of one scene) reuses that
        part and computes only the rest; the batch goes in two waves, those that others copy first."""
        plans = plan_prefill([row.prompt for row in rows], self.prefixes)
        logits: dict[int, np.ndarray] = {}
        for wave in (0, 1):
            entries: list[tuple[int, int, int, bool]] = []
            last: dict[int, int] = {}
            for row, plan in zip(rows, plans, strict=True):
                if plan.wave != wave:
                    continue
                if plan.cached is not None:
                    self._restore(plan.cached, row.slot, plan.shared)
                elif plan.source is not None:
                    self._restore(self._state(rows[plan.source].slot), row.slot, plan.shared)
                for position in range(plan.shared, len(row.prompt)):
                    entries.append((row.prompt[position], position, row.slot, position == len(row.prompt) - 1))
                last[row.slot] = len(entries) - 1
            if entries:
                self._decode(entries)
                for slot, index in last.items():
                    logits[slot] = self._logits(index)
        for row in rows:
            self.prefixes.add(tuple(row.prompt), self._state(row.slot))
        return [logits[row.slot] for row in rows]

    def run(self, prompts: Sequence[Sequence[int]], pick: Picker, max_new_tokens: int, stop: int) -> list[list[int]]:
        """Decode every prompt together until each picks ``stop`` (or reaches ``max_new_tokens``); returns the
        tokens picked for each. ``pick`` sees one row's logits at a time and may stream what it chose."""
        self._check(prompts)
        rows = [_Row(slot, list(prompt)) for slot, prompt in enumerate(prompts)]
        with self.lock:
            self.lib.llama_memory_clear(self.memory, True)
            first = self._prefill(rows)
            live = rows
            step_logits: list[np.ndarray] | None = first
            while live:
                step: list[tuple[int, int, int, bool]] = []
                still: list[_Row] = []
                for index, row in enumerate(live):
                    logits = step_logits[index] if step_logits is not None else self._logits(index)
                    token = pick(row.slot, logits)
                    row.generated.append(token)
                    if token == stop or len(row.generated) >= max_new_tokens or row.position >= self.window:
                        row.done = True
                        # The prompt and the answer as computed (the last token never was): the next scene's
                        # prompts start with this one's plus its narration, so they reuse it.
                        self.prefixes.add((*row.prompt, *row.generated[:-1]), self._state(row.slot))
                        continue
                    step.append((token, row.position - 1, row.slot, True))
                    still.append(row)
                live = still
                step_logits = None
                if step:
                    self._decode(step)
        return [row.generated for row in rows]


# --- prefix reuse (pure: which prompt reuses what) ---------------------------------------------
MIN_SHARED = 16  # fewer shared tokens are not worth a state copy


@dataclass
class PrefillPlan:
    """How one prompt enters the cache: ``shared`` tokens come from a cached prompt's state (``cached``) or
    from an earlier prompt of the batch (``source``, then it goes in the second ``wave``); the rest is
    computed."""

    shared: int = 0
    cached: Any = None
    source: int | None = None
    wave: int = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    size = min(len(a), len(b))
    if size == 0:
        return 0
    left, right = np.asarray(a[:size]), np.asarray(b[:size])
    differ = np.flatnonzero(left != right)
    return int(differ[0]) if differ.size else size


class PrefixCache:
    """Saved KV states of recent prompts (host memory, least recently used dropped first past ``max_bytes``)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: dict[tuple[int, ...], Any] = {}  # insertion order = recency
        self.size = 0  # bytes held
        self.hits = 0
        self.reused_tokens = 0

    def best(self, prompt: Sequence[int]) -> tuple[Any, int]:
        found, shared = None, 0
        for tokens, state in self.entries.items():
            length = common_prefix(tokens, prompt)
            if length > shared:
                found, shared = (tokens, state), length
        if found is None:
            return None, 0
        self.entries[found[0]] = self.entries.pop(found[0])  # recently used
        return found[1], shared

    def add(self, tokens: tuple[int, ...], state: Any) -> None:
        # An entry that is a prefix of the new one is served by it (states are cut to what is shared).
        for older in [t for t in self.entries if len(t) <= len(tokens) and tokens[: len(t)] == t]:
            self.size -= len(self.entries.pop(older))
        self.entries[tokens] = state
        self.size += len(state)
        while self.entries and self.size > self.max_bytes:
            self.size -= len(self.entries.pop(next(iter(self.entries))))


def plan_prefill(prompts: Sequence[Sequence[int]], cache: PrefixCache) -> list[PrefillPlan]:
    plans: list[PrefillPlan] = []
    for index, prompt in enumerate(prompts):
        limit = len(prompt) - 1  # the last token is always computed: its logits start the answer
        cached, from_cache = cache.best(prompt)
        plan = PrefillPlan(min(from_cache, limit), cached) if from_cache >= MIN_SHARED else PrefillPlan()
        for earlier in range(index):
            if plans[earlier].wave != 0:
                continue
            shared = min(common_prefix(prompts[earlier], prompt), limit)
            if shared >= MIN_SHARED and shared > plan.shared:
                plan = PrefillPlan(shared, None, earlier, 1)
        if plan.shared:
            cache.hits += 1
            cache.reused_tokens += plan.shared
        plans.append(plan)
    return plans
