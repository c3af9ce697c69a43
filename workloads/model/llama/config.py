"""Llama config.json <-> ModelConfig (attention_bias covers q/k/v and o; RoPE: all scaling types)."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.family import common_config, common_hf_config, require


def from_hf(hf: dict, folder: str) -> ModelConfig:
    """A ``LlamaForCausalLM`` config.json as a ModelConfig."""
    bias = bool(hf.get("attention_bias", False))
    return common_config(hf, folder, "llama", qkv_bias=bias, out_bias=bias, qk_norm=False)


def to_hf(cfg: ModelConfig) -> dict:
    """The ``LlamaForCausalLM`` config.json of ``cfg``."""
    require(cfg, "llama", qk_norm=False, moe=None, out_bias=cfg.qkv_bias)
    out = common_hf_config(cfg, "LlamaForCausalLM", "llama")
    out.update(attention_bias=bool(cfg.qkv_bias), mlp_bias=False)
    return out
