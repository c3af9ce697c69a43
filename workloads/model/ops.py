"""Op dispatch for the model and the losses: ``kernels="torch"`` (reference) or ``"triton"``.

The model and the training/RL losses call these functions only, so the model config's
``kernels`` switch selects implementations without monkey-patching. The Triton
implementations live in ``codekiln.kernels`` (loaded on first use, so the torch path, which
runs ``codekiln.kernels.reference``, never imports Triton; without CUDA that first use turns
on the Triton interpreter).
"""

from __future__ import annotations

import torch

from codekiln.kernels import reference

KERNELS = ("torch", "triton")


def _triton(kernels: str) -> bool:
    """True for the Triton path; a clear error for an unknown name."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    return kernels == "triton"


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, kernels: str = "torch") -> torch.Tensor:
    """RMSNorm computed in fp32, cast back to the input dtype."""
    if _triton(kernels):
        from codekiln.kernels import rms_norm as triton_rms_norm

        return triton_rms_norm(x, weight, eps)
    if x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype:  # same values, shorter backward
        from codekiln.workloads.model import fused

        return fused.rms_norm(x, weight, eps)
    return reference.rms_norm(x, weight, eps)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: str = "torch") -> torch.Tensor:
    """Rotate-half RoPE. x: [B, H, T, D]; cos/sin: [B, T, D] built from the batch's position ids (``cat(f, f)``)."""
    if _triton(kernels):
        from codekiln.kernels import apply_rope as triton_apply_rope

        return triton_apply_rope(x, cos, sin)
    from codekiln.workloads.model import fused  # no rotated copy, contiguous output (halves of cos/sin equal)

    return fused.apply_rope(x, cos, sin)


def swiglu(gate: torch.Tensor, up: torch.Tensor, kernels: str = "torch") -> torch.Tensor:
    """silu(gate) * up."""
    if _triton(kernels):
        from codekiln.kernels import swiglu as triton_swiglu

        return triton_swiglu(gate, up)
    return reference.swiglu(gate, up)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    kernels: str = "torch",
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels`` (hidden [N, D], labels [N]).

    Neither path materialises the full logits for "mean"/"sum" (torch: row chunks with the gradient computed in
    the forward pass); ``reduction`` is "mean", "sum" or "none".
    """
    if _triton(kernels):
        from codekiln.kernels import linear_cross_entropy as fused

        return fused(hidden, weight, labels, ignore_index=ignore_index, reduction=reduction)
    if reduction in ("sum", "mean"):  # chunked, gradient in the forward pass (codekiln.workloads.model.fused)
        from codekiln.workloads.model import fused as torch_fused

        return torch_fused.linear_cross_entropy(hidden, weight, labels, ignore_index=ignore_index, reduction=reduction)
    return reference.linear_cross_entropy(hidden, weight, labels, ignore_index=ignore_index, reduction=reduction)


def token_logprobs_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    kernels: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label token and the entropy of each position's distribution.

    hidden [N, D], weight [V, D], labels [N] -> (logprobs [N], entropy [N]), fp32.
    The Triton path streams over vocabulary tiles and keeps no [N, V] tensor for backward.
    """
    if _triton(kernels):
        from codekiln.kernels import token_logprobs_entropy as fused

        return fused(hidden, weight, labels, temperature=temperature)
    return reference.token_logprobs_entropy(hidden, weight, labels, temperature=temperature)
