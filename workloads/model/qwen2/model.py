"""The Qwen2 model: the shared decoder with Qwen2's attention switches."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer


def build(cfg: ModelConfig) -> Transformer:
    """A Qwen2 model of ``cfg``'s shape (random init)."""
    if cfg.family != "qwen2":
        raise ValueError(f"model.family {cfg.family!r} is not qwen2")
    return Transformer(cfg)
