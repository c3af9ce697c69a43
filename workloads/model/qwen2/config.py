"""Qwen2 / Qwen2.5(-Coder) config.json <-> ModelConfig: q/k/v biases (always), o without, often tied."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.family import common_config, common_hf_config, require


def from_hf(hf: dict, folder: str) -> ModelConfig:
    """A ``Qwen2ForCausalLM`` config.json as a ModelConfig."""
    return common_config(hf, folder, "qwen2", qkv_bias=True, out_bias=False, qk_norm=False)


def to_hf(cfg: ModelConfig) -> dict:
    """The ``Qwen2ForCausalLM`` config.json of ``cfg``."""
    require(cfg, "qwen2", qkv_bias=True, out_bias=False, qk_norm=False, moe=None)
    out = common_hf_config(cfg, "Qwen2ForCausalLM", "qwen2")
    out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    return out
