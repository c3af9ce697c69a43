"""KAT-Dev difficulty- and entropy-aware advantage rescaling.

KAT-Dev does not publish exact formulas; we use (REFERENCES §RL): group difficulty
``D_i = 1 − pass_i``, group factor ``α_i = 1 + λ (D_i − mean_i D)``, sample factor
``β_ij = 1 + μ (H_ij − mean_j H_ij)`` on the detached old-policy mean token entropy,
``A' = α β A``. Both factors are clamped at 0, so a sign never flips; λ = μ = 0 multiplies
by exactly 1.0 and reproduces GRPO bit for bit.
"""

from __future__ import annotations

import torch


def _group_mean(values: torch.Tensor, inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    counts = torch.zeros(n_groups, dtype=values.dtype).index_add_(0, inverse, torch.ones_like(values))
    sums = torch.zeros(n_groups, dtype=values.dtype).index_add_(0, inverse, values)
    return sums / counts


def kat_rescale(
    advantages: torch.Tensor,
    group_ids: torch.Tensor,
    passed: torch.Tensor,
    mean_entropy: torch.Tensor,
    difficulty_lambda: float,
    entropy_mu: float,
) -> torch.Tensor:
    """Rescale per-rollout advantages [N] by group difficulty and sample entropy.

    Args:
        advantages: GRPO advantages [N].
        group_ids: prompt group of each rollout [N].
        passed: 1.0 where the rollout passed all tests, else 0.0 [N].
        mean_entropy: detached old-policy mean token entropy of each rollout [N].
        difficulty_lambda: λ ≥ 0.
        entropy_mu: μ ≥ 0.
    """
    if difficulty_lambda < 0 or entropy_mu < 0:
        raise ValueError("KAT λ and μ must be ≥ 0")
    if difficulty_lambda == 0 and entropy_mu == 0:
        return advantages.clone()
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    dtype = torch.float64
    difficulty = 1.0 - _group_mean(passed.to(dtype), inverse, n_groups)  # per group
    alpha = (1.0 + difficulty_lambda * (difficulty - difficulty.mean())).clamp(min=0.0)[inverse]
    h = mean_entropy.detach().to(dtype)
    beta = (1.0 + entropy_mu * (h - _group_mean(h, inverse, n_groups)[inverse])).clamp(min=0.0)
    return (advantages.to(dtype) * alpha * beta).to(advantages.dtype)
