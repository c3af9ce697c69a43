"""Model architecture config and presets (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from codekiln.workloads.schema import ConfigModel

# name -> (dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size)
PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (64, 2, 4, 2, 192, 512),
    "small": (256, 4, 8, 4, 768, 8192),
    "125m": (768, 12, 12, 4, 2048, 32768),
    "1b": (2048, 16, 32, 8, 8192, 65536),
    "8b": (4096, 36, 32, 8, 14336, 155136),  # Seed-Coder 8B shape
}


class RopeScalingConfig(ConfigModel):
    """Llama-3 style RoPE frequency scaling (for 8k -> 32k context extension)."""

    factor: float = Field(default=4.0, ge=1.0, description="Context extension factor.")
    low_freq_factor: float = Field(default=1.0, gt=0)
    high_freq_factor: float = Field(default=4.0, gt=0)
    original_max_position_embeddings: int = Field(default=8192, ge=1)


class ModelConfig(ConfigModel):
    """A decoder-only Llama-3 style model. Unset sizes come from the preset."""

    preset: Literal["tiny", "small", "125m", "1b", "8b"] = Field(default="tiny", description="Size preset.")
    vocab_size: int | None = Field(default=None, ge=8, description="Vocabulary size (default: preset or tokenizer).")
    dim: int | None = Field(default=None, ge=8, description="Hidden size.")
    n_layers: int | None = Field(default=None, ge=1, le=256, description="Transformer blocks.")
    n_heads: int | None = Field(default=None, ge=1, description="Query heads.")
    n_kv_heads: int | None = Field(default=None, ge=1, description="Key/value heads (GQA).")
    ffn_dim: int | None = Field(default=None, ge=8, description="SwiGLU hidden size.")
    rope_theta: float = Field(default=500000.0, gt=0, description="RoPE base.")
    rope_scaling: RopeScalingConfig | None = Field(default=None, description="Optional RoPE scaling.")
    norm_eps: float = Field(default=1e-5, gt=0, lt=1, description="RMSNorm epsilon.")
    max_seq_len: int = Field(default=8192, ge=8, description="Longest sequence the model is built for.")
    kernels: Literal["torch", "triton"] = Field(default="torch", description="Op implementations.")
    attention: Literal["auto", "sdpa", "flex"] = Field(
        default="auto",
        description="Attention: auto/sdpa (SDPA with a bool mask; fused causal kernel when unmasked) or flex "
        "(FlexAttention block-sparse mask, compiled on GPU). Same results.",
    )
    activation_checkpointing: bool = Field(default=False, description="Recompute blocks in backward.")

    @model_validator(mode="after")
    def _fill_from_preset(self) -> ModelConfig:
        dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab = PRESETS[self.preset]
        for name, value in (
            ("dim", dim), ("n_layers", n_layers), ("n_heads", n_heads),
            ("n_kv_heads", n_kv_heads), ("ffn_dim", ffn_dim), ("vocab_size", vocab),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by nHeads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"nHeads ({self.n_heads}) must be divisible by nKvHeads ({self.n_kv_heads})")
        if (self.dim // self.n_heads) % 2:
            raise ValueError("head dimension (dim / nHeads) must be even for RoPE")
        return self

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads
