"""The I/O around the llama.cpp path: convert a storyteller to GGUF once (cached by content), load it, and
record the conversion on its MLflow model version. The conversion rules are ``models.gguf_export``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from data.tracking import TrackingTarget
from models.fast_writer import FastStoryteller
from models.gguf_export import FastPathUnavailableError, export_gguf
from models.storyteller import Storyteller

log = logging.getLogger(__name__)

DecoderKind = Literal["auto", "llama.cpp", "transformers"]
GGUF_TAG = "cyoa.gguf"


@dataclass(frozen=True)
class Decoding:
    """Which decoding path the writer uses. ``auto``: llama.cpp when the model converts and the package is
    installed, else transformers (with a warning saying why)."""

    kind: DecoderKind = "auto"
    weights: str = "auto"  # the GGUF weight type: auto (``weight_type``), bf16, q8_0, f16 or f32
    slots: int = 16  # sequences decoded together (branches of several games)
    cache: Path | None = None  # where GGUF files are kept; None: a temporary folder
    prompt_cache_mb: int = 512  # host memory for cached prompt states (``models.fast_decoder.PrefixCache``)
    continuous: bool = True  # scenes join the batch as slots free (calls overlap) instead of batch by batch


def content_key(storyteller: Storyteller) -> str:
    """A digest of what decides the weights: the storyteller folder's files (card, tokenizer, adapter or
    model; an adapter's card pins its base by digest)."""
    digest = hashlib.sha256()
    folder = storyteller.folder
    if folder is None:
        raise FastPathUnavailableError("the llama.cpp path converts a saved storyteller; this one has no folder")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def weight_type(requested: str) -> str:
    """The GGUF weight type to convert to. ``auto``: bf16 where this llama.cpp build multiplies it in hardware
    (measured on 2 cores: steps of 16 sequences 1.15-1.3x as fast as q8_0 alone and 1.5x in the capacity bench,
    prompts 1.6-1.9x, a lone scene as fast, and the float32 model's likelihood on the test split where q8_0 loses
    0.003 nats a token), else q8_0 (the fastest without)."""
    from models.fast_decoder import native_bf16

    if requested == "auto":
        return "bf16" if native_bf16() else "q8_0"
    if requested == "bf16" and not native_bf16():
        log.warning("bf16 weights on a llama.cpp build without AVX512-BF16 are widened in software at every "
                    "step (slower than q8_0); `make setup` turns it on where the CPU has it")
    return requested


def converted(storyteller: Storyteller, decoding: Decoding) -> tuple[Path, str]:
    """The storyteller's GGUF file (converted now unless cached) and a note saying what it is."""
    cache = decoding.cache or Path(tempfile.gettempdir()) / "cyoa-gguf"
    cache.mkdir(parents=True, exist_ok=True)
    weights = weight_type(decoding.weights)
    path = cache / f"{content_key(storyteller)}.{weights}.gguf"
    seconds = 0.0
    if not path.exists():
        started = time.perf_counter()
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as handle:
            temporary = handle.name
        try:
            export_gguf(storyteller.model, storyteller.tokenizer, Path(temporary), weights,
                        storyteller.window + 64)
            Path(temporary).replace(path)  # atomic: a crash never leaves a half file under the final name
        finally:
            Path(temporary).unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        log.info("converted %s to %s in %.1f s", storyteller.version, path, seconds)
    size = path.stat().st_size / 1e6
    note = f"{weights} {path.stem.split('.')[0]} {size:.0f} MB"
    if seconds:
        note += f", converted in {seconds:.1f} s"
    return path, note


def fast_storyteller(storyteller: Storyteller, decoding: Decoding, release_weights: bool = False) -> FastStoryteller:
    """The storyteller on the llama.cpp path; ``FastPathUnavailableError`` says why not. ``release_weights``:
    the caller hands the storyteller over, and its transformers weights are freed once converted."""
    from models.fast_decoder import LlamaCppModel

    if storyteller.seq2seq:
        raise FastPathUnavailableError("the llama.cpp path runs decoder-only models, not encoder-decoders")
    path, note = converted(storyteller, decoding)
    model = LlamaCppModel(path, slots=decoding.slots, window=storyteller.window + 64,
                          cache_bytes=decoding.prompt_cache_mb << 20)
    if release_weights:
        # llama.cpp holds the weights now: the transformers copy goes (the tokenizer and card stay), which
        # saves the half gigabyte a merged SmolLM2 takes in float32.
        cast(Any, storyteller.model).to("meta")
    return FastStoryteller(storyteller, model, note)


def record_conversion(target: TrackingTarget, version_label: str, note: str) -> None:
    """Tag the registered version with its GGUF conversion (skipped for a local folder)."""
    name, _, number = version_label.partition("/")
    if not number.isdigit():
        return
    from mlflow import MlflowClient

    target.activate()
    try:
        MlflowClient().set_model_version_tag(name, number, GGUF_TAG, f"llama.cpp {note}")
    except Exception as exc:  # a read-only or remote registry: the writer still works
        log.warning("could not tag %s with its GGUF conversion: %s", version_label, exc)
