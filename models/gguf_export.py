"""A loaded storyteller written out as a GGUF file, for the llama.cpp decoding path (``models.fast_decoder``).

Pure conversion: a causal LM's state dict and config in, one GGUF file out. Two architectures are supported,
the ones cyoa trains: Llama-family (SmolLM2 and any local Llama checkpoint, LoRA merged) and GPT-2 (the
from-scratch presets). Anything else raises ``FastPathUnavailableError`` and the engine keeps the transformers path.

Tokenisation stays with the storyteller's own (Hugging Face) tokenizer: llama.cpp is handed token ids, never
text. The vocabulary is still written (llama.cpp needs one to load a model) so the file is self-describing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from engine.errors import ModelLoadError

QUANTS = ("f32", "f16", "bf16", "q8_0")

# The gguf package logs every file it writes at INFO ("Writing the following files: ..."): chatter in a
# player's terminal. Its warnings still show.
logging.getLogger("gguf").setLevel(logging.WARNING)


class FastPathUnavailableError(ModelLoadError):
    """This model cannot take the llama.cpp path (architecture, tokenizer or package missing)."""


@dataclass(frozen=True)
class Tensor:
    name: str
    data: np.ndarray  # float32, HF layout already mapped to GGUF's
    quantise: bool  # a weight matrix (quantised to the chosen type) rather than a norm or a bias


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF Llama checkpoints rotate q/k with "rotate half"; GGUF stores the interleaved (Meta) order."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _llama_tensors(state: dict[str, np.ndarray], config: Any) -> list[Tensor]:
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    names = {"input_layernorm": "attn_norm", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    out = [Tensor("token_embd.weight", state["model.embed_tokens.weight"], True),
           Tensor("output_norm.weight", state["model.norm.weight"], False)]
    if "lm_head.weight" in state and not config.tie_word_embeddings:
        out.append(Tensor("output.weight", state["lm_head.weight"], True))
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}."
        out.append(Tensor(f"blk.{layer}.attn_q.weight", _permute(state[prefix + "self_attn.q_proj.weight"], heads),
                          True))
        out.append(Tensor(f"blk.{layer}.attn_k.weight",
                          _permute(state[prefix + "self_attn.k_proj.weight"], kv_heads), True))
        for hf, gguf_name in names.items():
            tensor = state[prefix + hf + ".weight"]
            out.append(Tensor(f"blk.{layer}.{gguf_name}.weight", tensor, tensor.ndim == 2))
    return out


def _gpt2_tensors(state: dict[str, np.ndarray], config: Any) -> list[Tensor]:
    # HF GPT-2 keeps its linear weights as Conv1D, [in, out]: GGUF wants [out, in] like nn.Linear.
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    embed = state["transformer.wte.weight"]
    out = [Tensor("token_embd.weight", embed, True),
           Tensor("position_embd.weight", state["transformer.wpe.weight"], False),
           Tensor("output_norm.weight", state["transformer.ln_f.weight"], False),
           Tensor("output_norm.bias", state["transformer.ln_f.bias"], False),
           Tensor("output.weight", state.get("lm_head.weight", embed), True)]
    for layer in range(config.n_layer):
        prefix = f"transformer.h.{layer}."
        for hf, gguf_name in names.items():
            weight = state[prefix + hf + ".weight"]
            out.append(Tensor(f"blk.{layer}.{gguf_name}.weight", weight.T.copy() if weight.ndim == 2 else weight,
                              weight.ndim == 2))
            out.append(Tensor(f"blk.{layer}.{gguf_name}.bias", state[prefix + hf + ".bias"], False))
    return out


def _merges(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise FastPathUnavailableError("the llama.cpp path needs a fast (tokenizers) byte-level BPE tokenizer")
    model = json.loads(backend.to_str()).get("model", {})
    if model.get("type") != "BPE":
        raise FastPathUnavailableError(f"the llama.cpp path needs a BPE tokenizer, not {model.get('type')!r}")
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def _vocabulary(tokenizer: PreTrainedTokenizerBase, rows: int) -> tuple[list[str], list[int]]:
    """Every id's token string and GGUF token type, padded to the embedding's rows."""
    import gguf

    special = set(tokenizer.all_special_ids) | {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
    tokens: list[str] = []
    types: list[int] = []
    for index in range(rows):
        token = tokenizer.convert_ids_to_tokens(index) if index < len(tokenizer) else None
        tokens.append(token if isinstance(token, str) else f"[PAD{index}]")
        kind = gguf.TokenType.CONTROL if index in special else gguf.TokenType.NORMAL
        types.append(int(kind if isinstance(token, str) else gguf.TokenType.UNUSED))
    return tokens, types


def _state(model: PreTrainedModel) -> dict[str, np.ndarray]:
    return {name: tensor.detach().to(torch.float32).cpu().numpy() for name, tensor in model.state_dict().items()}


def export_gguf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, quant: str = "q8_0",
                context_length: int = 2048) -> Path:
    """Write ``model`` (a merged causal LM) to ``path`` as GGUF with its weight matrices in ``quant``."""
    import gguf

    if quant not in QUANTS:
        raise FastPathUnavailableError(f"unknown GGUF weight type {quant!r}; pick one of {', '.join(QUANTS)}")
    config = model.config
    kind = config.model_type
    state = _state(model)
    if kind == "llama":
        tensors = _llama_tensors(state, config)
    elif kind == "gpt2":
        tensors = _gpt2_tensors(state, config)
    else:
        raise FastPathUnavailableError(f"the llama.cpp path supports Llama-family and GPT-2 models, not {kind!r}")
    merges = _merges(tokenizer)
    tokens, types = _vocabulary(tokenizer, tensors[0].data.shape[0])
    writer = gguf.GGUFWriter(str(path), kind)
    writer.add_name(f"cyoa storyteller ({kind})")
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    if kind == "llama":
        _llama_metadata(writer, config, context_length)
    else:
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for role, value in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                        ("pad", tokenizer.pad_token_id)):
        if value is not None:
            getattr(writer, f"add_{role}_token_id")(int(value))
    writer.add_add_bos_token(False)
    for tensor in tensors:
        data, raw = _encoded(tensor, quant)
        writer.add_tensor(tensor.name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _llama_metadata(writer: Any, config: Any, context_length: int) -> None:
    heads = config.num_attention_heads
    writer.add_context_length(min(context_length, config.max_position_embeddings))
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or
                                    (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // heads)


def _encoded(tensor: Tensor, quant: str) -> tuple[np.ndarray, Any]:
    """The tensor's bytes for the file: norms, biases and 1-D tensors stay float32 (llama.cpp expects that);
    a matrix whose rows do not split into Q8_0's 32-wide blocks falls back to f16; bf16 is float32 with its
    mantissa rounded to 7 bits (gguf rounds to nearest even), any shape."""
    import gguf

    data = np.ascontiguousarray(tensor.data, dtype=np.float32)
    if not tensor.quantise or quant == "f32":
        return data, gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % 32 == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, kind), kind
    if quant == "bf16":
        kind = gguf.GGMLQuantizationType.BF16
        return gguf.quants.quantize(data, kind), kind
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16
