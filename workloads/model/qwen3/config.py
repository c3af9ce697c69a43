"""Qwen3 config.json <-> ModelConfig: RMSNorm on each head's q and k, explicit head_dim, no qkv bias."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.family import common_config, common_hf_config, require


def from_hf(hf: dict, folder: str) -> ModelConfig:
    """A ``Qwen3ForCausalLM`` config.json as a ModelConfig."""
    bias = bool(hf.get("attention_bias", False))
    return common_config(hf, folder, "qwen3", qkv_bias=bias, out_bias=bias, qk_norm=True)


def to_hf(cfg: ModelConfig) -> dict:
    """The ``Qwen3ForCausalLM`` config.json of ``cfg``."""
    require(cfg, "qwen3", qk_norm=True, moe=None, out_bias=cfg.qkv_bias)
    out = common_hf_config(cfg, "Qwen3ForCausalLM", "qwen3")
    out.update(attention_bias=bool(cfg.qkv_bias), use_sliding_window=False, sliding_window=None,
               max_window_layers=cfg.n_layers)
    return out
