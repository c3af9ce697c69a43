"""DAPO overlong handling: soft length penalty on the reward, and filtering from the loss."""

from __future__ import annotations

import torch


def overlong_penalty(length: int, max_tokens: int, buffer_tokens: int, factor: float = 1.0) -> float:
    """Soft penalty ``min(−(len − (max − buffer)) / buffer · factor, 0)``, capped at −factor.

    0 up to ``max − buffer`` tokens, a linear ramp to −factor at ``max``; beyond ``max``
    (only possible when a rollout engine overshoots) it stays at −factor, as in the DAPO paper.
    """
    if buffer_tokens <= 0:
        raise ValueError("buffer_tokens must be > 0")
    exceed = length - (max_tokens - buffer_tokens)
    return max(min(-exceed / buffer_tokens * factor, 0.0), -factor)


def overlong_filter_mask(loss_mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """Zero the loss mask [N, T] of truncated rollouts [N] (overlong filtering)."""
    return loss_mask & ~truncated.bool().unsqueeze(-1)
