"""DPO on on-policy pairs labelled by sandbox unit tests (Seed-Coder style).

Per prompt, sample several answers, run their tests, pair a passing answer (chosen)
with a failing one (rejected). Reference log-probs come from the policy snapshot taken
after the warm start, computed once per (prompt, answer) and cached. The policy's
chosen and rejected answers share their prompt, so the trie-packed forward computes the
prompt once.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.losses import dpo_sigmoid_loss


def build_pairs(batch) -> list[tuple[int, int]]:
    """(chosen row, rejected row) pairs: within each group, passing answers × failing answers, zipped."""
    pairs = []
    for g in dict.fromkeys(batch.group_ids.tolist()):
        rows = (batch.group_ids == g).nonzero().squeeze(-1).tolist()
        good = [r for r in rows if batch.passed[r] > 0.5]
        bad = [r for r in rows if batch.passed[r] <= 0.5]
        pairs.extend(zip(good, bad, strict=False))
    return pairs


def sequence_logps(model, prompts, responses, packed: bool) -> torch.Tensor:
    """Sum of response token log-probs (temperature 1) per sequence."""
    logp, _ = response_logprobs(model, prompts, responses, 1.0, packed=packed)
    lengths = torch.tensor([len(r) for r in responses], device=logp.device)
    mask = torch.arange(logp.shape[1], device=logp.device).unsqueeze(0) < lengths.unsqueeze(1)
    return (logp * mask).sum(-1)


def cached_ref_logps(ref_model, cache: dict, prompts, responses, packed: bool) -> torch.Tensor:
    """Reference log-probs, computed once per (prompt, response) and kept in ``cache``."""
    keys = [(tuple(p), tuple(r)) for p, r in zip(prompts, responses, strict=True)]
    missing = list(dict.fromkeys(k for k in keys if k not in cache))
    if missing:
        with torch.no_grad():
            vals = sequence_logps(ref_model, [list(k[0]) for k in missing], [list(k[1]) for k in missing], packed)
        cache.update({k: float(v) for k, v in zip(missing, vals.cpu(), strict=True)})
    return torch.tensor([cache[k] for k in keys], dtype=torch.float64)


def dpo_update(
    model, ref_model, optimizer, batch, ref_cache: dict, *, beta: float, grad_clip_norm: float | None, packed: bool,
) -> dict:
    """Pair a scored batch's passing and failing answers and take one DPO optimizer step on ``model``.

    Args:
        model: the policy (updated in place).
        ref_model: the frozen reference policy.
        optimizer: the policy's optimizer.
        batch: scored rollouts (``passed`` set), grouped by prompt.
        ref_cache: reference log-probs by (prompt, response), reused across steps.
        beta: DPO β.
        grad_clip_norm: global gradient-norm clip (None: off).
        packed: trie-packed forwards.
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    pairs = build_pairs(batch)
    n = len(pairs)
    if world > 1:  # every rank must join the gradient all-reduce, even one without pairs
        counts = torch.tensor([float(n)])
        dist.all_reduce(counts)
        if counts.item() == 0:
            return {"loss": 0.0, "pairs": 0, "skipped": True}
    elif not pairs:
        return {"loss": 0.0, "pairs": 0, "skipped": True}
    optimizer.zero_grad()
    if pairs:
        chosen, rejected = [c for c, _ in pairs], [r for _, r in pairs]
        prompts = [batch.prompts[i] for i in chosen + rejected]
        responses = [batch.responses[i] for i in chosen + rejected]
        ref = cached_ref_logps(ref_model, ref_cache, prompts, responses, packed)
        pol = sequence_logps(model, prompts, responses, packed)
        loss = dpo_sigmoid_loss(pol[:n], pol[n:], ref[:n].to(pol), ref[n:].to(pol), beta)
        loss.backward()
    if world > 1:  # mean over ranks of per-rank mean pair losses
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
    if grad_clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    optimizer.step()
    if not pairs:
        return {"loss": 0.0, "pairs": 0, "skipped": False}
    margin = beta * ((pol[:n] - ref[:n].to(pol)) - (pol[n:] - ref[n:].to(pol)))
    return {"loss": float(loss.detach()), "pairs": n, "skipped": False, "reward_margin": float(margin.detach().mean()),
            "reward_accuracy": float((margin.detach() > 0).float().mean())}
