"""The Qwen MoE models: the shared decoder with ``moe.MoE`` blocks (grouped experts, router statistics)."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer


def build(cfg: ModelConfig) -> Transformer:
    """A Qwen2-MoE / Qwen3-MoE model of ``cfg``'s shape (random init)."""
    if cfg.family not in ("qwen2_moe", "qwen3_moe"):
        raise ValueError(f"model.family {cfg.family!r} is not qwen2_moe or qwen3_moe")
    return Transformer(cfg)
