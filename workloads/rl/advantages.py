"""Group-relative advantage estimators, in a registry keyed by ``spec.rl.algorithm`` (the trainer's lookup).

Rollouts of one prompt form a group (``group_ids``). GRPO: ``A = (r − mean) / (std + eps)``;
Dr.GRPO drops the std. A group of one has no baseline and gets advantage 0, as does a
group whose rewards are all equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-6


def _group_stats(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-rollout group mean, unbiased group std (0 for groups of one) and group size."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    r = rewards.to(torch.float64)
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, r)
    mean = sums / counts
    sq = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, (r - mean[inverse]) ** 2)
    var = torch.where(counts > 1, sq / (counts - 1).clamp(min=1), torch.zeros_like(sq))
    return mean[inverse], var.sqrt()[inverse], counts[inverse]


def grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """GRPO: reward minus group mean, divided by group std (+eps). Shape [N] -> [N]."""
    mean, std, count = _group_stats(rewards, group_ids)
    adv = (rewards.to(torch.float64) - mean) / (std + eps)
    return torch.where(count > 1, adv, torch.zeros_like(adv)).to(rewards.dtype)


def dr_grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Dr.GRPO: reward minus group mean (no std normalisation)."""
    mean, _, count = _group_stats(rewards, group_ids)
    adv = rewards.to(torch.float64) - mean
    return torch.where(count > 1, adv, torch.zeros_like(adv)).to(rewards.dtype)


ADVANTAGE_ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": grpo_advantages,
    "dapo": grpo_advantages,
    "rft": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
}


def compute_advantages(name: str, rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Look up the estimator for an algorithm name and apply it."""
    try:
        fn = ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        known = sorted(ADVANTAGE_ESTIMATORS)
        raise ValueError(f"algorithm {name!r} has no advantage estimator; known: {known}") from None
    return fn(rewards, group_ids)
