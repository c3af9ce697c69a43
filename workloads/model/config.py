"""Model architecture config and presets (torch-free).

One ``ModelConfig`` describes every family codekiln trains (``family``: llama, qwen2, qwen3,
qwen2_moe, qwen3_moe); the family fixes what ``config.json`` it exports to and the defaults of
the family-specific switches (qkv bias, q/k norm). Sizes not given come from the preset.
"""

from __future__ import annotations

from typing import Annotated, Literal

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

FAMILIES = ("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe")
Family = Literal["llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe"]
ROPE_TYPES = ("linear", "dynamic", "llama3", "yarn")


class RopeScalingConfig(ConfigModel):
    """RoPE frequency scaling for context extension; computed exactly as transformers does.

    ``linear`` divides every frequency by ``factor``; ``dynamic`` (NTK) raises the base once a
    batch is longer than ``maxSeqLen``; ``llama3`` scales low frequencies only (Llama 3.1);
    ``yarn`` blends interpolation and extrapolation per dimension and scales attention by
    ``0.1·ln(factor) + 1`` (Qwen3-Coder 256k → 1M).
    """

    type: Literal["linear", "dynamic", "llama3", "yarn"] = Field(default="llama3", description="Scaling type.")
    factor: float = Field(default=4.0, ge=1.0, description="Context extension factor.")
    low_freq_factor: float = Field(default=1.0, gt=0, description="llama3: low-frequency boundary factor.")
    high_freq_factor: float = Field(default=4.0, gt=0, description="llama3: high-frequency boundary factor.")
    original_max_position_embeddings: int = Field(
        default=8192, ge=1, description="llama3/yarn: context length the model was pretrained at."
    )
    beta_fast: float = Field(default=32.0, gt=0, description="yarn: extrapolation boundary (rotations).")
    beta_slow: float = Field(default=1.0, gt=0, description="yarn: interpolation boundary (rotations).")
    attention_factor: float | None = Field(
        default=None, gt=0, description="yarn: cos/sin scale (default 0.1·ln(factor)+1, or from mscale)."
    )
    mscale: float | None = Field(default=None, description="yarn (DeepSeek): mscale.")
    mscale_all_dim: float | None = Field(default=None, description="yarn (DeepSeek): mscaleAllDim.")
    truncate: bool = Field(default=True, description="yarn: round the correction range to whole dimensions.")

    @model_validator(mode="after")
    def _check(self) -> RopeScalingConfig:
        if self.type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                f"ropeScaling.highFreqFactor ({self.high_freq_factor}) must exceed "
                f"lowFreqFactor ({self.low_freq_factor})"
            )
        return self


class MoEConfig(ConfigModel):
    """Mixture of experts in the MLP of the sparse layers (Qwen2-MoE / Qwen3-MoE / DeepSeek-V3 balancing)."""

    num_experts: int = Field(ge=1, description="Routed experts per sparse layer.")
    top_k: int = Field(ge=1, description="Experts each token is routed to.")
    expert_ffn_dim: int = Field(ge=1, description="SwiGLU hidden size of one routed expert.")
    shared_expert_ffn_dim: int = Field(default=0, ge=0, description="Shared expert hidden size (0: none).")
    shared_expert_gate: bool = Field(
        default=True, description="Scale the shared expert by sigmoid(gate(x)) (Qwen2-MoE)."
    )
    norm_topk_prob: bool = Field(default=False, description="Renormalise the top-k routing weights to sum to 1.")
    sparse_step: int = Field(default=1, ge=1, description="Every N-th layer is sparse (decoder_sparse_step).")
    dense_layers: list[int] = Field(default_factory=list, description="Layers that keep a dense MLP.")
    aux_loss_coef: float = Field(default=0.001, ge=0, description="Load-balancing loss weight (transformers').")
    z_loss_coef: float = Field(default=0.0, ge=0, description="Router z-loss weight (mean logsumexp² of logits).")
    capacity_factor: float | None = Field(
        default=None, gt=0,
        description="Expert capacity = ceil(factor · tokens · topK / experts); tokens past it are dropped "
        "(none: no dropping, exact).",
    )
    balancing: Literal["aux_loss", "aux_free"] = Field(
        default="aux_loss",
        description="aux_loss: the load-balancing loss only; aux_free: also DeepSeek-V3's per-expert routing "
        "bias (selection only), nudged by biasUpdateSpeed after every optimizer step.",
    )
    bias_update_speed: float = Field(default=0.001, ge=0, description="aux_free: bias step per update.")

    @model_validator(mode="after")
    def _check(self) -> MoEConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.topK ({self.top_k}) exceeds moe.numExperts ({self.num_experts})")
        return self


class ModelConfig(ConfigModel):
    """A decoder-only transformer (Llama / Qwen family). Unset sizes come from the preset."""

    family: Family = Field(default="llama", description="Architecture family (sets the export's config.json).")
    preset: Literal["tiny", "small", "125m", "1b", "8b"] = Field(default="tiny", description="Size preset.")
    vocab_size: Annotated[int, Field(ge=8)] | Literal["auto"] | None = Field(
        default=None,
        description="Vocabulary size: a number, auto (the run's tokenizer.json, special tokens included) or unset "
        "(the preset's).",
    )
    dim: int | None = Field(default=None, ge=8, description="Hidden size.")
    n_layers: int | None = Field(default=None, ge=1, le=256, description="Transformer blocks.")
    n_heads: int | None = Field(default=None, ge=1, description="Query heads.")
    n_kv_heads: int | None = Field(default=None, ge=1, description="Key/value heads (GQA).")
    head_dim: int | None = Field(default=None, ge=2, description="Per-head size (default dim / nHeads; Qwen3 sets it).")
    ffn_dim: int | None = Field(default=None, ge=8, description="SwiGLU hidden size (dense layers).")
    qkv_bias: bool | None = Field(default=None, description="Biases on q/k/v projections (default: qwen2 families).")
    out_bias: bool = Field(default=False, description="Bias on the attention output projection.")
    qk_norm: bool | None = Field(default=None, description="RMSNorm per head on q and k (default: qwen3 families).")
    tie_embeddings: bool = Field(default=False, description="LM head shares the embedding matrix.")
    norm_head: bool = Field(default=False, description="NormHead: LM head rows normalised to unit length.")
    moe: MoEConfig | None = Field(default=None, description="Mixture of experts (required by the MoE families).")
    rope_theta: float = Field(default=500000.0, gt=0, description="RoPE base.")
    rope_scaling: RopeScalingConfig | None = Field(default=None, description="Optional RoPE scaling.")
    norm_eps: float = Field(default=1e-5, gt=0, lt=1, description="RMSNorm epsilon.")
    max_seq_len: int = Field(default=8192, ge=8, description="Longest sequence (exported as max_position_embeddings).")
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
        if self.qkv_bias is None:
            object.__setattr__(self, "qkv_bias", self.family in ("qwen2", "qwen2_moe"))
        if self.qk_norm is None:
            object.__setattr__(self, "qk_norm", self.family in ("qwen3", "qwen3_moe"))
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise ValueError(f"dim ({self.dim}) must be divisible by nHeads ({self.n_heads}) unless headDim is set")
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"nHeads ({self.n_heads}) must be divisible by nKvHeads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"headDim ({self.head_dim}) must be even for RoPE")
        moe_family = self.family.endswith("_moe")
        if moe_family and self.moe is None:
            raise ValueError(f"family {self.family}: set moe (numExperts, topK, expertFfnDim)")
        if not moe_family and self.moe is not None:
            raise ValueError(f"moe: family {self.family} has no experts (use qwen2_moe or qwen3_moe)")
        if self.moe is not None and any(not 0 <= i < self.n_layers for i in self.moe.dense_layers):
            raise ValueError(f"moe.denseLayers {self.moe.dense_layers}: layers are 0..{self.n_layers - 1}")
        return self

    def with_vocab(self, tokenizer_vocab: int | None, field: str = "model.vocabSize") -> ModelConfig:
        """This config with ``vocabSize: auto`` resolved to the tokenizer's size (a number is checked against it).

        Args:
            tokenizer_vocab: the tokenizer's vocabulary size including special tokens (None: unknown).
            field: the field path named in errors.
        """
        if self.vocab_size == "auto":
            if tokenizer_vocab is None:
                raise ValueError(f"{field}: auto needs a tokenizer.json (none found)")
            return self.model_copy(update={"vocab_size": tokenizer_vocab})
        if tokenizer_vocab is not None and self.vocab_size < tokenizer_vocab:
            raise ValueError(f"{field} ({self.vocab_size}) is smaller than the tokenizer's vocabulary "
                             f"({tokenizer_vocab}); set it to auto")
        return self

    def is_sparse_layer(self, layer: int) -> bool:
        """Whether block ``layer`` has an MoE MLP (transformers' mlp_only_layers / decoder_sparse_step rule)."""
        moe = self.moe
        return moe is not None and layer not in moe.dense_layers and (layer + 1) % moe.sparse_step == 0
