"""The policy loss (PPO-clip with clip-higher and dual clip; the update path calls it directly) and the DPO loss.

All policy losses return a *per-token* loss [N, T]; :func:`aggregate` reduces it with a
normaliser computed over the whole optimizer step (all micro-batches, accumulation steps
and data-parallel ranks), which makes the result independent of how the batch is split.
"""

from __future__ import annotations

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


# verl's names (``actor.loss_agg_mode``); the old names stay as aliases.
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
LOSS_AGG_ALIASES = {"token": "token-mean", "sequence": "seq-mean-token-mean"}
# Default aggregation per algorithm: DAPO/Seed-Coder token-level; Dr. GRPO's constant normaliser.
DEFAULT_LOSS_AGG = {"grpo": "token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm"}


def resolve_loss_agg_mode(mode: str | None, algorithm: str = "grpo") -> str:
    """A verl aggregation name from ``mode`` (None / "auto": the algorithm's default, aliases accepted)."""
    if mode in (None, "auto"):
        return DEFAULT_LOSS_AGG.get(algorithm, "token-mean")
    mode = LOSS_AGG_ALIASES.get(mode, mode)
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"lossAggMode must be one of {LOSS_AGG_MODES} (or auto), got {mode!r}")
    return mode


def loss_normalizer(loss_mask: torch.Tensor, mode: str, max_response_tokens: int | None = None) -> torch.Tensor:
    """This rank's contribution to the global normaliser of ``mode``.

    token-mean: loss tokens; seq-mean-*: sequences (every row, as verl's and TRL's batch mean);
    seq-mean-token-sum-norm: sequences × ``max_response_tokens`` (Dr. GRPO's constant, TRL's
    ``batch × max_completion_length``).
    """
    mode = LOSS_AGG_ALIASES.get(mode, mode)
    if mode == "token-mean":
        return loss_mask.sum().to(torch.float64)
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        return torch.tensor(float(loss_mask.shape[0]), dtype=torch.float64)
    if mode == "seq-mean-token-sum-norm":
        if not max_response_tokens:
            raise ValueError("seq-mean-token-sum-norm needs max_response_tokens (the stage's maxResponseTokens)")
        return torch.tensor(float(loss_mask.shape[0]) * max_response_tokens, dtype=torch.float64)
    raise ValueError(f"lossAggMode must be one of {LOSS_AGG_MODES}, got {mode!r}")


def aggregate(per_token: torch.Tensor, loss_mask: torch.Tensor, normalizer: float, mode: str = "token-mean"
              ) -> torch.Tensor:
    """Masked per-token losses reduced by ``mode`` and divided by the *global* normaliser.

    token-mean, seq-mean-token-sum, seq-mean-token-sum-norm: Σ loss / normaliser;
    seq-mean-token-mean: Σ_seq (mean over the sequence's tokens) / normaliser.
    A normaliser of 0 (nothing to learn from) gives an exact 0 loss.
    """
    mode = LOSS_AGG_ALIASES.get(mode, mode)
    mask = loss_mask.to(per_token.dtype)
    if mode in ("token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"):
        total = (per_token * mask).sum()
    elif mode == "seq-mean-token-mean":
        total = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum()
    else:
        raise ValueError(f"lossAggMode must be one of {LOSS_AGG_MODES}, got {mode!r}")
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
