"""RoPE inverse frequencies and attention factor for every scaling type, bit-exact with transformers.

transformers computes in fp32 (``torch.arange(0, d, 2, dtype=int64).float() / d``, then
``base ** x`` as a tensor power); computing in fp64 and casting differs by ~1e-7 relative,
which grows to ~1e-4 in logits by position 300. Every formula below keeps transformers'
dtypes and operation order (reimplemented from the published formulas, not copied).
"""

from __future__ import annotations

import math

import torch

from codekiln.workloads.model.config import ModelConfig


def _exponents(dim: int) -> torch.Tensor:
    """``arange(0, dim, 2) / dim`` in fp32, as transformers builds it."""
    return torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim


def default_inv_freq(base: float | torch.Tensor, dim: int) -> torch.Tensor:
    """Unscaled inverse frequencies [dim/2], fp32."""
    return 1.0 / (base ** _exponents(dim))


def _llama3(inv_freq: torch.Tensor, s) -> torch.Tensor:
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    old_len = s.original_max_position_embeddings
    smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_attention_factor(s) -> float:
    """YaRN's cos/sin scale: given, or from DeepSeek's mscale pair, or ``0.1·ln(factor) + 1``."""
    if s.attention_factor is not None:
        return s.attention_factor
    if s.mscale and s.mscale_all_dim:
        return float(_yarn_mscale(s.factor, s.mscale) / _yarn_mscale(s.factor, s.mscale_all_dim))
    return _yarn_mscale(s.factor)


def _yarn(base: float, dim: int, s) -> torch.Tensor:
    def correction_dim(rotations: float) -> float:
        return (dim * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).to(dtype=torch.float) / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (s.factor * pos_freqs)
    keep = 1 - ramp  # 1: extrapolate (high frequencies), 0: interpolate (low)
    return interpolation * (1 - keep) + extrapolation * keep


def rope_init(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """(inverse frequencies [head_dim/2] fp32, cos/sin scale) at build time.

    ``dynamic`` starts unscaled (its base grows per batch, see ``dynamic_inv_freq``).
    """
    dim, base, s = cfg.head_dim, cfg.rope_theta, cfg.rope_scaling
    if s is None or s.type == "dynamic":
        return default_inv_freq(base, dim), 1.0
    if s.type == "linear":
        inv_freq = default_inv_freq(base, dim)
        inv_freq /= s.factor
        return inv_freq, 1.0
    if s.type == "llama3":
        return _llama3(default_inv_freq(base, dim), s), 1.0
    if s.type == "yarn":
        return _yarn(base, dim, s), yarn_attention_factor(s)
    raise ValueError(f"ropeScaling.type {s.type!r} is not one of linear, dynamic, llama3, yarn")


def dynamic_inv_freq(cfg: ModelConfig, seq_len: torch.Tensor) -> torch.Tensor:
    """Dynamic-NTK inverse frequencies for a batch whose longest position is ``seq_len - 1`` (0-d int64)."""
    dim, factor, max_pos = cfg.head_dim, cfg.rope_scaling.factor, cfg.max_seq_len
    seq_len = torch.maximum(seq_len, torch.tensor(max_pos, dtype=seq_len.dtype, device=seq_len.device))
    base = cfg.rope_theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / (base ** _exponents(dim).to(seq_len.device))


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """Build-time inverse frequencies (fp32); kept for callers of the old API."""
    return rope_init(cfg)[0]
