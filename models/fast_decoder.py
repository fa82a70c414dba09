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
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.gguf_export import FastPathUnavailableError

log = logging.getLogger(__name__)

_INIT = threading.Lock()
_READY: dict[str, Any] = {}
# One llama_decode at a time in the process, whatever the model: two versions loaded side by side (the
# champion and a challenger) would otherwise run their thread pools on the same cores at once, and ggml's
# threads wait for each other at every operation, so both would go slower than taking turns a step each.
_CORES = threading.Lock()


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
            if b"OPENMP = 1" in llama_cpp.llama_print_system_info():
                log.warning("llama.cpp was built with OpenMP: next to torch in one process every decoding step "
                            "takes about 1.6x as long (measured); `make setup` builds it without")
            _READY["lib"] = llama_cpp
        return _READY["lib"]


def native_bf16() -> bool:
    """Whether this build of llama.cpp multiplies bf16 weights in hardware (AVX512-BF16, which ``make setup``
    turns on where the CPU has it); without, every bf16 weight is widened in software, slower than q8_0."""
    info: bytes = _llama().llama_print_system_info()
    return b"AVX512_BF16 = 1" in info or b"AMX_BF16 = 1" in info

@dataclass
class Job:
    """One sequence to write: its prompt, how its next token is chosen (``pick`` sees the logits after every
    token and may stream what it chose), when it stops, and where its answer goes (``result``: the tokens
    picked, passed through ``finish``). Cancelling ``result`` takes the sequence out at the next step."""

    prompt: list[int]
    pick: Callable[[np.ndarray], int]
    max_new_tokens: int
    stop: int
    # The answer is cached for the next prompt only up to these tokens: a scene's choices never reappear in a
    # later prompt (the history shows the action taken), so caching them only costs memory.
    reusable_until: frozenset[int] = frozenset()
    finish: Callable[[list[int]], Any] = list
    result: Future[Any] = field(default_factory=Future)


@dataclass
class _Row:
    """A job being written: its slot in the KV pool, what it has written, the logits for its next token."""

    job: Job
    slot: int
    generated: list[int] = field(default_factory=list)
    logits: np.ndarray | None = None

    @property
    def prompt(self) -> list[int]:
        return self.job.prompt

    @property
    def position(self) -> int:
        return len(self.job.prompt) + len(self.generated)


@dataclass
class DecoderCounters:
    """Where the decoder's time went, for benchmarks and the service's metrics."""

    prompt_tokens: int = 0  # prompt tokens computed
    reused_tokens: int = 0  # prompt tokens restored from a cached or sibling prompt instead
    written_tokens: int = 0
    steps: int = 0  # decoding steps (one token for every live sequence)
    rows_stepped: int = 0  # sum over steps of the sequences in them: / steps = the mean batch
    moves: int = 0  # sequences moved to a lower slot to keep the live ones consecutive (see ``_packed``)
    by_rows: dict[int, list[float]] = field(default_factory=dict)  # sequences in a step: [steps, seconds]
    prefill_seconds: float = 0.0
    step_seconds: float = 0.0
    # Between two steps, in Python: each sequence's next token (grammar, sampling), and for those that end
    # their state saved for the next prompts.
    pick_seconds: float = 0.0

    def step(self, rows: int, seconds: float) -> None:
        self.steps += 1
        self.rows_stepped += rows
        self.step_seconds += seconds
        tally = self.by_rows.setdefault(rows, [0, 0.0])
        tally[0] += 1
        tally[1] += seconds

    def step_ms_by_rows(self) -> dict[int, float]:
        """The mean milliseconds of a step of n sequences, for each n seen."""
        return {rows: round(1000 * seconds / count, 1) for rows, (count, seconds) in sorted(self.by_rows.items())}

    def summary(self) -> dict[str, float]:
        return {"prompt_tokens_computed": self.prompt_tokens, "prompt_tokens_reused": self.reused_tokens,
                "written_tokens": self.written_tokens,
                "mean_rows_a_step": round(self.rows_stepped / max(self.steps, 1), 2), "slot_moves": self.moves,
                "prefill_s": round(self.prefill_seconds, 1), "steps_s": round(self.step_seconds, 1),
                "picks_s": round(self.pick_seconds, 1)}


Picker = Callable[[int, np.ndarray], int]  # (row, logits) -> the row's next token (``run``)


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
        # A cached prompt may also be reused with a block cut out of its middle (``PrefixCache.best``), which
        # moves the cells after the cut down: only a model whose positions are rotations (RoPE) allows that.
        shifts = bool(lib.llama_memory_can_shift(self.memory)) and lib.llama_model_rope_type(self.model) >= 0
        self.prefixes = PrefixCache(cache_bytes, cuts=shifts)
        self.counters = DecoderCounters()
        # Continuous batching: jobs wait in the inbox and join the sequences being written as soon as a slot
        # frees, between two steps. One thread decodes while there is work, and ends when there is none.
        self._inbox: deque[Job] = deque()
        self._wake = threading.Lock()
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        with self._wake:
            waiting, self._inbox = list(self._inbox), deque()
            thread = self._thread
        for job in waiting:
            _settle(job, error=FastPathUnavailableError("the model was closed before this scene was written"))
        if thread is not None and thread is not threading.current_thread():
            thread.join()
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
        with _CORES:
            code = self.lib.llama_decode(self.context, batch)
        if code != 0:
            raise FastPathUnavailableError(f"llama.cpp could not decode a batch of {len(entries)} tokens (code {code})")

    def _logits(self, index: int) -> np.ndarray:
        pointer = self.lib.llama_get_logits_ith(self.context, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _fits(self, prompt: Sequence[int]) -> FastPathUnavailableError | None:
        """Why ``prompt`` cannot be decoded here, or None."""
        if not prompt or len(prompt) >= self.window:
            return FastPathUnavailableError(f"a prompt of {len(prompt)} tokens does not fit a {self.window} window")
        return None

    # --- scoring and writing ------------------------------------------------------------------
    def log_probs(self, ids: Sequence[int], start: int = 1) -> np.ndarray:
        """log p(ids[i] | ids[:i]) for i >= ``start`` (>= 1): what the parity test compares with transformers,
        and, with ``start`` past a prompt, a continuation's score (only its positions' logits are computed)."""
        problem = self._fits(ids)
        if problem is not None:
            raise problem
        start = max(1, start)
        with self.lock:
            self.lib.llama_memory_clear(self.memory, True)
            self._decode([(token, position, 0, position >= start - 1) for position, token in enumerate(ids)])
            rows = np.stack([self._logits(i) for i in range(start - 1, len(ids) - 1)]).astype(np.float64)
        rows -= rows.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(rows).sum(axis=1))
        targets = np.asarray(ids[start:])
        scores: np.ndarray = rows[np.arange(len(targets)), targets] - log_norm
        return scores

    # --- prefixes -----------------------------------------------------------------------------
    def _state(self, slot: int) -> Any:
        size = int(self.lib.llama_state_seq_get_size(self.context, slot))
        buffer = (ctypes.c_uint8 * size)()
        self.lib.llama_state_seq_get_data(self.context, buffer, size, slot)
        return buffer

    def _restore(self, plan: PrefillPlan, slot: int) -> None:
        """Put a saved sequence into ``slot``, cut out the plan's block (the cells after it move down, their
        keys rotated to the new positions at the next decode) and keep the first ``plan.shared`` positions."""
        state = plan.cached
        if not self.lib.llama_state_seq_set_data(self.context, state, len(state), slot):
            raise FastPathUnavailableError("llama.cpp could not restore a cached prompt")
        if plan.cut:
            end = plan.cut_at + plan.cut
            self.lib.llama_memory_seq_rm(self.memory, slot, plan.cut_at, end)
            self.lib.llama_memory_seq_add(self.memory, slot, end, -1, -plan.cut)
        self.lib.llama_memory_seq_rm(self.memory, slot, plan.shared, -1)

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
                self.lib.llama_memory_seq_rm(self.memory, row.slot, -1, -1)  # what the slot's last job left
                if plan.cached is not None:
                    self._restore(plan, row.slot)
                elif plan.source is not None:  # a copy inside llama.cpp, not through host memory
                    self.lib.llama_memory_seq_cp(self.memory, rows[plan.source].slot, row.slot, -1, -1)
                    self.lib.llama_memory_seq_rm(self.memory, row.slot, plan.shared, -1)
                self.counters.reused_tokens += plan.shared
                self.counters.prompt_tokens += len(row.prompt) - plan.shared
                for position in range(plan.shared, len(row.prompt)):
                    entries.append((row.prompt[position], position, row.slot, position == len(row.prompt) - 1))
                last[row.slot] = len(entries) - 1
            if entries:
                self._decode(entries)
                for slot, index in last.items():
                    logits[slot] = self._logits(index)
        for row in rows:
            self.prefixes.add(tuple(row.prompt), self._state(row.slot), len(row.prompt))
        return [logits[row.slot] for row in rows]

    def run(self, prompts: Sequence[Sequence[int]], pick: Picker, max_new_tokens: int, stop: int) -> list[list[int]]:
        """Decode every prompt (more than the slots: each joins as a slot frees) until each picks ``stop`` or
        reaches ``max_new_tokens``; returns the tokens picked for each. ``pick`` sees one row's logits at a
        time and may stream what it chose."""
        jobs = [Job(list(prompt), functools.partial(pick, row), max_new_tokens, stop)
                for row, prompt in enumerate(prompts)]
        for job in jobs:
            self.submit(job)
        return [job.result.result() for job in jobs]

    def submit(self, job: Job) -> Future[Any]:
        """Queue a job; it joins the sequences being written at the next step with a free slot. Never blocks:
        the answer comes in ``job.result``."""
        problem = self._fits(job.prompt)
        if problem is not None:
            _settle(job, error=problem)
            return job.result
        with self._wake:
            if not self.context:
                raise FastPathUnavailableError("the model is closed")
            self._inbox.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._decode_while_busy, name="llama.cpp", daemon=True)
                self._thread.start()
        return job.result

    def _take(self, room: int) -> list[Job]:
        taken: list[Job] = []
        with self._wake:
            while self._inbox and len(taken) < room:
                job = self._inbox.popleft()
                if not job.result.cancelled():
                    taken.append(job)
        return taken

    def _decode_while_busy(self) -> None:
        while True:
            with self._wake:
                if not self._inbox:
                    self._thread = None  # under the lock: a job submitted from now on starts a new thread
                    return
            with self.lock:
                live: list[_Row] = []
                try:
                    self._serve(live)
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    log.exception("the llama.cpp decoding loop failed")
                    for job in [row.job for row in live] + self._take(len(self._inbox)):
                        _settle(job, error=exc)

    def _serve(self, live: list[_Row]) -> None:
        """Write until no job is left: admit waiting jobs into free slots, then one step for every sequence
        (``live``: the sequences being written, kept by the caller to fail them if this breaks)."""
        free = list(range(self.slots))[::-1]
        while True:
            jobs = self._take(len(free))
            if jobs:
                live += self._admit([_Row(job, free.pop()) for job in jobs], free)
            if not live:
                return
            still: list[_Row] = []
            picking = time.perf_counter()
            for row in live:
                token = self._next(row)
                if token is None or self._finished(row, token):
                    free.append(row.slot)
                    continue
                still.append(row)
            self.counters.pick_seconds += time.perf_counter() - picking
            live[:] = self._packed(still, free)
            if not live:
                continue
            step = [(row.generated[-1], row.position - 1, row.slot, True) for row in live]
            started = time.perf_counter()
            try:
                self._decode(step)
            except FastPathUnavailableError as exc:
                for row in live:
                    _settle(row.job, error=exc)
                    free.append(row.slot)
                live.clear()
                continue
            self.counters.step(len(step), time.perf_counter() - started)
            for index, row in enumerate(live):
                row.logits = self._logits(index)

    def _packed(self, rows: list[_Row], free: list[int]) -> list[_Row]:
        """``rows`` in slots 0..n-1, in slot order; ``free`` then holds the rest, lowest last (``pop`` takes it).

        With one KV stream per sequence, llama.cpp splits a step into one computation per run of consecutive
        slots in ascending order: 8 sequences in slots 0-7 took 34 ms a step, in slots 0, 2, .., 14 85 ms and
        in slots 7..0 65 ms (measured). So a sequence in a high slot moves down into a free lower one (a copy
        of its stream inside llama.cpp, about 2 ms, folded into the next step) whenever a sequence ends below
        it."""
        staying = sorted(rows, key=lambda row: row.slot)
        free.sort(reverse=True)
        while staying and free and free[-1] < staying[-1].slot:  # the highest sequence into the lowest gap
            row, low = staying.pop(), free.pop()
            self.lib.llama_memory_seq_rm(self.memory, low, -1, -1)
            self.lib.llama_memory_seq_cp(self.memory, row.slot, low, -1, -1)
            self.lib.llama_memory_seq_rm(self.memory, row.slot, -1, -1)
            free.append(row.slot)
            free.sort(reverse=True)
            row.slot = low
            self.counters.moves += 1
        return sorted(rows, key=lambda row: row.slot)

    def _admit(self, rows: list[_Row], free: list[int]) -> list[_Row]:
        """Prefill new rows; those that fail give their slots back with their error."""
        started = time.perf_counter()
        try:
            firsts = self._prefill(rows)
        except FastPathUnavailableError as exc:
            for row in rows:
                _settle(row.job, error=exc)
                free.append(row.slot)
            return []
        self.counters.prefill_seconds += time.perf_counter() - started
        for row, logits in zip(rows, firsts, strict=True):
            row.logits = logits
        return rows

    @staticmethod
    def _next(row: _Row) -> int | None:
        """The row's next token, or None when the row leaves (its caller gave up, or its picker failed)."""
        if row.job.result.cancelled() or row.logits is None:
            return None
        try:
            token = row.job.pick(row.logits)
        except Exception as exc:  # a picker's bug fails its own sequence only
            _settle(row.job, error=exc)
            return None
        row.generated.append(token)
        return token

    def _finished(self, row: _Row, token: int) -> bool:
        job = row.job
        if token != job.stop and len(row.generated) < job.max_new_tokens and row.position < self.window:
            return False
        self.counters.written_tokens += len(row.generated)
        # The prompt and the answer as computed (the last token never was), up to the first token the next
        # prompts will not repeat: the next scene's prompts start with this one's plus its narration.
        computed = row.generated[:-1]
        cut = next((i for i, t in enumerate(computed) if t in job.reusable_until), len(computed))
        kept = len(job.prompt) + cut
        self.lib.llama_memory_seq_rm(self.memory, row.slot, kept, -1)
        self.prefixes.add((*job.prompt, *computed[:cut]), self._state(row.slot), len(job.prompt))
        _settle(job, value=row.generated)
        return True


def _settle(job: Job, value: list[int] | None = None, error: BaseException | None = None) -> None:
    """Give a job its answer (through its ``finish``) or its error, unless its caller cancelled it."""
    if job.result.done():
        return
    try:
        if error is None:
            job.result.set_result(job.finish(value or []))
        else:
            job.result.set_exception(error)
    except InvalidStateError:  # cancelled by its caller in the meantime
        pass
    except Exception as exc:  # ``finish`` failed
        with contextlib.suppress(InvalidStateError):
            job.result.set_exception(exc)


# --- prefix reuse (pure: which prompt reuses what) ---------------------------------------------
MIN_SHARED = 16  # fewer shared tokens are not worth a state copy


@dataclass
class PrefillPlan:
    """How one prompt enters the cache: ``shared`` tokens come from a cached prompt's state (``cached``, with
    ``cut`` of its tokens from ``cut_at`` on cut out) or from an earlier prompt of the batch (``source``, then it
    goes in the second ``wave``); the rest is computed."""

    shared: int = 0
    cached: Any = None
    source: int | None = None
    wave: int = 0
    cut_at: int = 0
    cut: int = 0


@dataclass(frozen=True)
class Reuse:
    """What a cached entry gives a prompt: its first ``shared`` tokens, once ``cut`` tokens from ``cut_at`` on
    are cut out of the entry (no cut: ``cut`` 0). ``used``: how far into the entry the reuse reaches."""

    shared: int = 0
    cut_at: int = 0
    cut: int = 0

    @property
    def used(self) -> int:
        return self.shared + self.cut


def reuse(entry: Sequence[int] | np.ndarray, prompt: Sequence[int] | np.ndarray, cuts: bool) -> Reuse:
    """The most of ``prompt`` that ``entry`` can give: their common start, and with ``cuts`` also what follows
    once one block of the entry is cut out. That is how a story's next prompt relates to its last answer: the
    window keeps the premise and lore and drops the oldest scene, so the last scene (the answer, cached as it
    was written) follows the lore directly."""
    start = common_prefix(entry, prompt)
    best = Reuse(start)
    if not cuts or start == 0 or start >= len(prompt) or start >= len(entry):
        return best
    for offset in np.flatnonzero(np.asarray(entry[start + 1:]) == prompt[start]):
        resume = start + 1 + int(offset)
        more = common_prefix(entry[resume:], prompt[start:])
        if more >= MIN_SHARED and start + more > best.shared:
            best = Reuse(start + more, start, resume - start)
    return best


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    size = min(len(a), len(b))
    if size == 0:
        return 0
    left, right = np.asarray(a[:size]), np.asarray(b[:size])
    differ = np.flatnonzero(left != right)
    return int(differ[0]) if differ.size else size


class PrefixCache:
    """Saved KV states of recent prompts (host memory, least recently used dropped first past ``max_bytes``).

    Each entry is a prompt and, once written, the reusable part of its answer. Entries that share a prompt
    and differ after it are the branches of one scene; when a later prompt continues one of them past the
    prompt, that branch was taken and the others are dropped (the vote that chose between them is over), so
    the cache holds about one scene's branches per game in play rather than every branch ever written. With
    ``cuts`` an entry also serves a prompt that continues it once a block of its middle is cut out (``reuse``)."""

    def __init__(self, max_bytes: int, cuts: bool = False) -> None:
        self.max_bytes = max_bytes
        self.cuts = cuts  # entries may be reused with a block cut out (``reuse``)
        self.entries: dict[tuple[int, ...], Any] = {}  # insertion order = recency
        self.prompt_lengths: dict[tuple[int, ...], int] = {}  # where each entry's answer starts
        self.arrays: dict[tuple[int, ...], np.ndarray] = {}  # the entries' tokens, for fast comparison
        self.size = 0  # bytes held
        self.dropped_branches = 0

    def best(self, prompt: Sequence[int]) -> tuple[Any, Reuse]:
        """The cached state that gives ``prompt`` the most tokens, and how (None and an empty ``Reuse``)."""
        found, most = None, Reuse()
        wanted = np.asarray(prompt)
        for tokens in self.entries:
            candidate = reuse(self.arrays[tokens], wanted, self.cuts)
            if candidate.shared > most.shared:
                found, most = tokens, candidate
        if found is None:
            return None, most
        self.entries[found] = self.entries.pop(found)  # recently used
        if most.used > self.prompt_lengths[found]:
            self._drop_siblings(found)
        return self.entries[found], most

    def _drop_siblings(self, taken: tuple[int, ...]) -> None:
        length = self.prompt_lengths[taken]
        for tokens in [t for t in self.entries if t != taken and self.prompt_lengths[t] == length
                       and t[:length] == taken[:length]]:
            self._remove(tokens)
            self.dropped_branches += 1

    def _remove(self, tokens: tuple[int, ...]) -> None:
        self.size -= len(self.entries.pop(tokens))
        del self.prompt_lengths[tokens]
        del self.arrays[tokens]

    def add(self, tokens: tuple[int, ...], state: Any, prompt_length: int | None = None) -> None:
        """Keep ``state`` for ``tokens``, whose first ``prompt_length`` (default: all) were the prompt."""
        # An entry that is a prefix of the new one is served by it (states are cut to what is shared).
        for older in [t for t in self.entries if len(t) <= len(tokens) and tokens[: len(t)] == t]:
            self._remove(older)
        self.entries[tokens] = state
        self.arrays[tokens] = np.asarray(tokens)
        self.prompt_lengths[tokens] = len(tokens) if prompt_length is None else prompt_length
        self.size += len(state)
        while self.entries and self.size > self.max_bytes:
            self._remove(next(iter(self.entries)))


def plan_prefill(prompts: Sequence[Sequence[int]], cache: PrefixCache) -> list[PrefillPlan]:
    plans: list[PrefillPlan] = []
    for index, prompt in enumerate(prompts):
        limit = len(prompt) - 1  # the last token is always computed: its logits start the answer
        cached, found = cache.best(prompt)
        plan = (PrefillPlan(min(found.shared, limit), cached, cut_at=found.cut_at, cut=found.cut)
                if found.shared >= MIN_SHARED else PrefillPlan())
        for earlier in range(index):
            if plans[earlier].wave != 0:
                continue
            shared = min(common_prefix(prompts[earlier], prompt), limit)
            if shared >= MIN_SHARED and shared > plan.shared:
                plan = PrefillPlan(shared, None, earlier, 1)
        plans.append(plan)
    return plans
