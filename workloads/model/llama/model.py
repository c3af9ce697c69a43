"""The Llama model: the shared decoder with plain attention and SwiGLU MLPs."""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer


def build(cfg: ModelConfig) -> Transformer:
    """A Llama model of ``cfg``'s shape (random init)."""
    if cfg.family != "llama":
        raise ValueError(f"model.family {cfg.family!r} is not llama")
    return Transformer(cfg)
