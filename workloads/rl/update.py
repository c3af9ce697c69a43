"""One policy optimizer step on a rollout batch (micro-batched, sharded, split invariant).

The loss of every micro-batch is divided by the *global* normaliser of the step (loss
tokens, sequences, or Dr. GRPO's constant — see ``losses.LOSS_AGG_MODES``) over all
micro-batches and data-parallel ranks; gradients are summed over micro-batches and, for a
sharded policy, reduce-scattered with SUM by FSDP2 itself (``sharding.shard_model``). The
result therefore does not depend on the micro-batch, accumulation or data-parallel split.

Packed micro-batches come from :func:`trie.plan_micro_batches`: a node budget
(``max_packed_tokens``) splits a tree that does not fit by dynamic programming over its
branches; each micro-batch re-computes the prefixes it needs, so gradients are exactly
those of the unsplit batch. Ranks with fewer micro-batches run zero-weighted ones so every
rank issues the same FSDP collectives.

A step whose global loss-token count is 0 (e.g. every completion truncated and filtered)
is skipped entirely: no optimizer step, so momentum and weight decay leave parameters
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.losses import aggregate, kl_k3, loss_normalizer, ppo_clip_loss, resolve_loss_agg_mode
from codekiln.workloads.rl.sharding import all_reduce_max, all_reduce_sum, is_sharded, release
from codekiln.workloads.rl.trie import plan_micro_batches


@dataclass
class LossSettings:
    """The loss knobs of an RL config.

    Attributes:
        normalization: loss aggregation (verl names: token-mean, seq-mean-token-sum,
            seq-mean-token-mean, seq-mean-token-sum-norm; "token"/"sequence" are aliases).
        max_response_tokens: Dr. GRPO's constant (seq-mean-token-sum-norm) per sequence.
        max_packed_tokens: node budget of one packed micro-batch (None: rollout count only).
    """

    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip_c: float | None = None
    kl_coef: float = 0.0
    normalization: str = "token-mean"
    overlong_filtering: bool = True
    temperature: float = 1.0
    packed: bool = True
    max_response_tokens: int | None = None
    max_packed_tokens: int | None = None

    @classmethod
    def from_config(cls, cfg, max_response_tokens: int | None = None) -> LossSettings:
        mode = getattr(cfg, "loss_agg_mode", None) or getattr(cfg, "loss_normalization", None)
        return cls(
            clip_low=cfg.clip_ratio_low, clip_high=cfg.clip_ratio_high, dual_clip_c=cfg.dual_clip_c,
            kl_coef=cfg.kl_coef, normalization=resolve_loss_agg_mode(mode, cfg.algorithm),
            overlong_filtering=cfg.overlong.filtering, temperature=cfg.temperature, packed=cfg.trie_packing,
            max_response_tokens=max_response_tokens or cfg.max_response_tokens,
            max_packed_tokens=getattr(cfg, "trie_max_tokens", None),
        )


@dataclass
class UpdateStats:
    loss: float
    loss_tokens: int
    grad_norm: float
    clip_fraction: float
    entropy: float
    skipped: bool
    kl: float = 0.0
    micro_batches: int = 0
    trained_tokens: int = 0  # tokens through the trainer's forward (packed nodes or padded rows), all ranks


def global_normalizer(batch: RolloutBatch, settings: LossSettings) -> float:
    """The step's normaliser summed over all ranks."""
    mask = batch.loss_mask(settings.overlong_filtering)
    local = loss_normalizer(mask, settings.normalization, settings.max_response_tokens).reshape(1).clone()
    return float(all_reduce_sum(local))


def plan(batch: RolloutBatch, settings: LossSettings, micro_batch_rollouts: int) -> list[list[int]]:
    """Row indices of each micro-batch of this rank (rows without loss tokens are left out)."""
    mask = batch.loss_mask(settings.overlong_filtering)
    rows = [i for i in range(len(batch)) if bool(mask[i].any())]
    if not rows:
        return []
    if not settings.packed:
        return [rows[s:s + micro_batch_rollouts] for s in range(0, len(rows), micro_batch_rollouts)]
    seqs = [batch.prompts[i] + batch.responses[i] for i in rows]
    parts = plan_micro_batches(seqs, settings.max_packed_tokens, micro_batch_rollouts, field="trieMaxTokens")
    return [[rows[j] for j in part] for part in parts]


def accumulate_gradients(
    model, batch: RolloutBatch, settings: LossSettings, normalizer: float, micro_batch_rollouts: int,
    ref_model=None, behaviour_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Backward over micro-batches of this rank's rollouts; returns the local loss share and stats.

    Args:
        behaviour_logp: per-token log-probs of the policy that *sampled* the batch when it is
            older than ``batch.old_logp`` (one-step-stale async rollouts): the token loss is then
            weighted by ``exp(old − behaviour)`` (decoupled PPO: clip against the proximal policy,
            correct for the behaviour policy). None: the batch is on-policy.
    """
    if batch.advantages is None:
        raise ValueError("batch.advantages must be set before the policy update")
    mask_all = batch.loss_mask(settings.overlong_filtering)
    micro = plan(batch, settings, micro_batch_rollouts)
    n_micro = all_reduce_max(len(micro)) if is_sharded(model) else len(micro)
    total = torch.zeros((), dtype=torch.float64)
    clipped = ent_sum = n_tok = kl_sum = trained = 0.0
    for k in range(n_micro):
        if k >= len(micro):  # keep FSDP collectives in step with ranks that have more micro-batches
            _zero_weight_pass(model, batch, ref_model)
            continue
        rows = micro[k]
        prompts = [batch.prompts[i] for i in rows]
        responses = [batch.responses[i] for i in rows]
        logp, ent = response_logprobs(model, prompts, responses, settings.temperature, packed=settings.packed)
        width = logp.shape[1]
        mask = mask_all[rows, :width].to(logp.device)
        old = batch.old_logp[rows, :width].to(logp)
        adv = batch.advantages[rows].to(logp)
        per_token = ppo_clip_loss(
            logp, old, adv, clip_low=settings.clip_low, clip_high=settings.clip_high, dual_clip_c=settings.dual_clip_c
        )
        if behaviour_logp is not None:
            weight = torch.exp(old - behaviour_logp[rows, :width].to(logp)).masked_fill(~mask, 0.0)
            per_token = per_token * weight
        if settings.kl_coef > 0 or ref_model is not None:
            if ref_model is None:
                raise ValueError("klCoef > 0 needs a reference model")
            with torch.no_grad():
                ref_logp, _ = response_logprobs(ref_model, prompts, responses, settings.temperature, settings.packed)
            release(ref_model)
            kl = kl_k3(logp, ref_logp.to(logp))
            kl_sum += float((kl.detach() * mask).sum())
            if settings.kl_coef > 0:
                per_token = per_token + settings.kl_coef * kl
        loss = aggregate(per_token, mask, normalizer, settings.normalization)
        loss.backward()
        total += loss.detach().double().cpu()
        with torch.no_grad():
            ratio = torch.exp(logp - old)
            out = (ratio < 1 - settings.clip_low) | (ratio > 1 + settings.clip_high)
            clipped += float((out & mask).sum())
            ent_sum += float((ent * mask).sum())
            n_tok += float(mask.sum())
        trained += _forward_tokens(prompts, responses, settings.packed)
    return total, {"clipped": clipped, "entropy_sum": ent_sum, "tokens": n_tok, "kl_sum": kl_sum,
                   "micro_batches": float(len(micro)), "trained_tokens": trained}


def _forward_tokens(prompts, responses, packed: bool) -> float:
    if packed:
        from codekiln.workloads.rl.trie import build_trie

        return float(build_trie([p + r for p, r in zip(prompts, responses, strict=True)]).num_tokens)
    return float(len(prompts) * max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True)))


def _zero_weight_pass(model, batch: RolloutBatch, ref_model=None) -> None:
    """A forward/backward with zero loss weight: the same collectives in the same order as a
    real micro-batch (policy forward, reference forward, backward), no gradient contribution."""
    row = batch.prompts[0][:1] if batch.prompts and batch.prompts[0] else [0]
    logp, _ = response_logprobs(model, [row], [row], 1.0, packed=False)
    if ref_model is not None:
        with torch.no_grad():
            response_logprobs(ref_model, [row], [row], 1.0, packed=False)
        release(ref_model)
    (logp.sum() * 0.0).backward()


def _grad_norm(model) -> float:
    """Global L2 norm of the gradients: local shards' squares summed over ranks when sharded."""
    from torch.distributed.tensor import DTensor

    sq = torch.zeros(1, dtype=torch.float64)
    sharded = False
    for p in model.parameters():
        if p.grad is None:
            continue
        g = p.grad
        if isinstance(g, DTensor):
            g, sharded = g.to_local(), True
        sq += g.detach().double().pow(2).sum().cpu()
    if sharded:
        all_reduce_sum(sq)
    return float(sq.sqrt())


def policy_update(
    model, optimizer: torch.optim.Optimizer, batch: RolloutBatch, settings: LossSettings,
    micro_batch_rollouts: int = 16, grad_clip_norm: float = 0.0, ref_model=None,
    behaviour_logp: torch.Tensor | None = None,
) -> UpdateStats:
    """One optimizer step on ``batch`` (this rank's share of the step's rollouts)."""
    mask = batch.loss_mask(settings.overlong_filtering)
    tokens = float(all_reduce_sum(mask.sum().double().reshape(1).clone()))
    if tokens <= 0:
        return UpdateStats(loss=0.0, loss_tokens=0, grad_norm=0.0, clip_fraction=0.0, entropy=0.0, skipped=True)
    normalizer = global_normalizer(batch, settings)
    optimizer.zero_grad(set_to_none=False)
    local, stats = accumulate_gradients(model, batch, settings, normalizer, micro_batch_rollouts, ref_model,
                                        behaviour_logp)
    if grad_clip_norm > 0:  # sharded or not: clip_grad_norm_ reduces DTensor norms over the mesh itself
        grad_norm = float(torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                                         grad_clip_norm))
    else:
        grad_norm = _grad_norm(model)
    optimizer.step()
    totals = all_reduce_sum(torch.tensor(
        [float(local), stats["clipped"], stats["entropy_sum"], stats["tokens"], stats["kl_sum"],
         stats["micro_batches"], stats["trained_tokens"]], dtype=torch.float64))
    n = max(float(totals[3]), 1.0)
    return UpdateStats(
        loss=float(totals[0]), loss_tokens=int(totals[3]), grad_norm=grad_norm,
        clip_fraction=float(totals[1]) / n, entropy=float(totals[2]) / n, skipped=False, kl=float(totals[4]) / n,
        micro_batches=int(totals[5]), trained_tokens=int(totals[6]),
    )
