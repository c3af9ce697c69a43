"""Policy losses (registry keyed by name) and the DPO loss.

All policy losses return a *per-token* loss [N, T]; :func:`aggregate` reduces it with a
normaliser computed over the whole optimizer step (all micro-batches, accumulation steps
and data-parallel ranks), which makes the result independent of how the batch is split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip_c: float | None = None,
) -> torch.Tensor:
    """PPO-clip with clip-higher: ``max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high))`` per token.

    With ``dual_clip_c`` (c > 1), tokens with A < 0 are further bounded by ``−A·c``.
    ``advantages`` is [N] (one per rollout) or [N, T].
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = torch.maximum(-advantages * ratio, -advantages * clipped)
    if dual_clip_c is not None:
        bounded = torch.minimum(loss, -advantages * dual_clip_c)
        loss = torch.where(advantages < 0, bounded, loss)
    return loss


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 KL estimate ``exp(ref − logp) − (ref − logp) − 1`` (≥ 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


POLICY_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"ppo_clip": ppo_clip_loss}


def loss_normalizer(loss_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Local contribution to the global normaliser: loss tokens ("token") or sequences ("sequence")."""
    if mode == "token":
        return loss_mask.sum().to(torch.float64)
    if mode == "sequence":
        return (loss_mask.sum(-1) > 0).sum().to(torch.float64)
    raise ValueError(f"loss normalisation must be 'token' or 'sequence', got {mode!r}")


def aggregate(per_token: torch.Tensor, loss_mask: torch.Tensor, normalizer: float, mode: str = "token") -> torch.Tensor:
    """Sum of masked per-token losses divided by the *global* normaliser.

    "token": Σ loss / global tokens. "sequence": Σ_seq (mean over the sequence's tokens) /
    global sequences. A normaliser of 0 (nothing to learn from) gives an exact 0 loss.
    """
    mask = loss_mask.to(per_token.dtype)
    if mode == "token":
        total = (per_token * mask).sum()
    elif mode == "sequence":
        total = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum()
    else:
        raise ValueError(f"loss normalisation must be 'token' or 'sequence', got {mode!r}")
    if normalizer <= 0:
        return total * 0.0
    return total / normalizer


def dpo_sigmoid_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Sigmoid DPO: mean of ``−log σ(β((π_c − ref_c) − (π_r − ref_r)))`` over pairs (sequence log-probs)."""
    delta = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * delta).mean()
