"""The Qwen3 model: the shared decoder with Qwen3's attention switches."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer


def build(cfg: ModelConfig) -> Transformer:
    """A Qwen3 model of ``cfg``'s shape (random init)."""
    if cfg.family != "qwen3":
        raise ValueError(f"model.family {cfg.family!r} is not qwen3")
    return Transformer(cfg)
