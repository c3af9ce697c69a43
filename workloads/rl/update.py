"""One policy optimizer step on a rollout batch (micro-batched, DP-aware, split invariant).

The loss of every micro-batch is divided by the *global* normaliser (loss tokens or
sequences over all micro-batches and data-parallel ranks), gradients are summed over
micro-batches and all-reduced with SUM across ranks. The result therefore does not
depend on the micro-batch, gradient-accumulation or data-parallel split. A step whose
global normaliser is 0 (e.g. every completion truncated and filtered) is skipped
entirely: no optimizer step, so momentum and weight decay leave parameters unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.losses import aggregate, kl_k3, loss_normalizer, ppo_clip_loss


@dataclass
class LossSettings:
    """The loss knobs of an RL config."""

    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip_c: float | None = None
    kl_coef: float = 0.0
    normalization: str = "token"
    overlong_filtering: bool = True
    temperature: float = 1.0
    packed: bool = True

    @classmethod
    def from_config(cls, cfg) -> LossSettings:
        return cls(
            clip_low=cfg.clip_ratio_low, clip_high=cfg.clip_ratio_high, dual_clip_c=cfg.dual_clip_c,
            kl_coef=cfg.kl_coef, normalization=cfg.loss_normalization, overlong_filtering=cfg.overlong.filtering,
            temperature=cfg.temperature, packed=cfg.trie_packing,
        )


@dataclass
class UpdateStats:
    loss: float
    loss_tokens: int
    grad_norm: float
    clip_fraction: float
    entropy: float
    skipped: bool


def _all_reduce(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def global_normalizer(batch: RolloutBatch, settings: LossSettings) -> float:
    """Loss tokens (or sequences) of this optimizer step summed over all ranks."""
    mask = batch.loss_mask(settings.overlong_filtering)
    return float(_all_reduce(loss_normalizer(mask, settings.normalization).clone()))


def accumulate_gradients(
    model, batch: RolloutBatch, settings: LossSettings, normalizer: float, micro_batch_rollouts: int,
    ref_model=None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Backward over micro-batches of this rank's rollouts; returns the local loss share and stats."""
    if batch.advantages is None:
        raise ValueError("batch.advantages must be set before the policy update")
    mask_all = batch.loss_mask(settings.overlong_filtering)
    total = torch.zeros((), dtype=torch.float64)
    clipped = ent_sum = n_tok = 0.0
    for start in range(0, len(batch), micro_batch_rollouts):
        rows = list(range(start, min(start + micro_batch_rollouts, len(batch))))
        mask = mask_all[rows]
        if not bool(mask.any()):
            continue  # nothing to learn here: skip the forward too
        prompts = [batch.prompts[i] for i in rows]
        responses = [batch.responses[i] for i in rows]
        logp, ent = response_logprobs(model, prompts, responses, settings.temperature, packed=settings.packed)
        width = logp.shape[1]
        mask = mask[:, :width].to(logp.device)
        old = batch.old_logp[rows, :width].to(logp)
        adv = batch.advantages[rows].to(logp)
        per_token = ppo_clip_loss(
            logp, old, adv, clip_low=settings.clip_low, clip_high=settings.clip_high, dual_clip_c=settings.dual_clip_c
        )
        if settings.kl_coef > 0:
            if ref_model is None:
                raise ValueError("klCoef > 0 needs a reference model")
            with torch.no_grad():
                ref_logp, _ = response_logprobs(ref_model, prompts, responses, settings.temperature, settings.packed)
            per_token = per_token + settings.kl_coef * kl_k3(logp, ref_logp.to(logp))
        loss = aggregate(per_token, mask, normalizer, settings.normalization)
        loss.backward()
        total += loss.detach().double().cpu()
        with torch.no_grad():
            ratio = torch.exp(logp - old)
            out = (ratio < 1 - settings.clip_low) | (ratio > 1 + settings.clip_high)
            clipped += float((out & mask).sum())
            ent_sum += float((ent * mask).sum())
            n_tok += float(mask.sum())
    return total, {"clipped": clipped, "entropy_sum": ent_sum, "tokens": n_tok}


def policy_update(
    model, optimizer: torch.optim.Optimizer, batch: RolloutBatch, settings: LossSettings,
    micro_batch_rollouts: int = 16, grad_clip_norm: float = 0.0, ref_model=None,
) -> UpdateStats:
    """One optimizer step on ``batch`` (this rank's share of the step's rollouts)."""
    normalizer = global_normalizer(batch, settings)
    if normalizer <= 0:
        return UpdateStats(loss=0.0, loss_tokens=0, grad_norm=0.0, clip_fraction=0.0, entropy=0.0, skipped=True)
    optimizer.zero_grad(set_to_none=False)
    local, stats = accumulate_gradients(model, batch, settings, normalizer, micro_batch_rollouts, ref_model)
    if dist.is_available() and dist.is_initialized():
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip_norm > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip_norm))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    optimizer.step()
    totals = _all_reduce(torch.tensor([float(local), stats["clipped"], stats["entropy_sum"], stats["tokens"]],
                                      dtype=torch.float64))
    tokens = max(float(totals[3]), 1.0)
    return UpdateStats(
        loss=float(totals[0]), loss_tokens=int(totals[3]), grad_norm=grad_norm,
        clip_fraction=float(totals[1]) / tokens, entropy=float(totals[2]) / tokens, skipped=False,
    )
