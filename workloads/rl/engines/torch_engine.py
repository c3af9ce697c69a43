"""Reference rollout engine: batched sampling on our Transformer with a KV cache."""

from __future__ import annotations

import torch

from codekiln.workloads.model.transformer import KVCache
from codekiln.workloads.rl.engines.base import Completion, SamplingParams, Weights, iter_weights


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (−inf) the tail outside the smallest set whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # keep a token if the mass *before* it is < top_p (the top token is always kept)
    drop = probs.cumsum(-1) - probs >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


class TorchEngine:
    """Samples from a model: the live training model (weights shared, ``update_weights`` is free), or a
    rollout replica (a sharded policy, or one-step-stale async rollouts) that receives weights one tensor
    at a time."""

    def __init__(self, model, max_batch_size: int = 256) -> None:
        self.model = model
        self.max_batch_size = max_batch_size

    @torch.no_grad()
    def update_weights(self, weights: Weights) -> None:
        own = self.model.state_dict()
        for name, tensor in iter_weights(weights):
            target = own.get(name)
            if target is None:
                raise KeyError(f"rollout model has no tensor {name!r}")
            if target.data_ptr() != tensor.data_ptr():
                target.copy_(tensor)

    def sleep(self) -> None:
        return None

    def wake_up(self) -> None:
        return None

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=self.model.lm_head.weight.device).manual_seed(params.seed)
        for start in range(0, len(prompts), self.max_batch_size):
            out.extend(self._generate_batch(prompts[start : start + self.max_batch_size], params, gen, start))
        return out

    def _generate_batch(self, prompts, params: SamplingParams, gen, row_offset: int) -> list[Completion]:
        model = self.model
        was_training = model.training
        model.eval()
        device = model.lm_head.weight.device
        dtype = model.lm_head.weight.dtype
        b = len(prompts)
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        plen = max(len(p) for p in prompts)
        total = plen + params.max_tokens
        ids = torch.zeros(b, plen, dtype=torch.long, device=device)
        valid = torch.zeros(b, total, dtype=torch.bool, device=device)  # keys that exist (left padding excluded)
        pad = torch.tensor([plen - len(p) for p in prompts], device=device)
        for i, p in enumerate(prompts):
            ids[i, plen - len(p):] = torch.tensor(p, device=device)
            valid[i, plen - len(p):plen] = True
        positions = (torch.arange(plen, device=device).unsqueeze(0) - pad.unsqueeze(1)).clamp(min=0)
        causal = torch.ones(plen, plen, dtype=torch.bool, device=device).tril()
        mask = causal.unsqueeze(0) & valid[:, :plen].unsqueeze(1)
        mask = mask | torch.eye(plen, dtype=torch.bool, device=device).unsqueeze(0)  # pad rows attend themselves
        cache = KVCache(model.cfg, b, total, dtype, device)
        hidden = model.hidden_states(ids, position_ids=positions, attention_mask=mask, kv_cache=cache)[:, -1]
        tokens: list[list[int]] = [[] for _ in range(b)]
        logps: list[list[float]] = [[] for _ in range(b)]
        reasons: list[str | None] = [None] * b
        next_pos = positions[:, -1] + 1
        stop_ids = set(params.stop_token_ids)
        for step in range(params.max_tokens):
            logits = model.lm_head(hidden).float() / params.temperature
            logp_all = torch.log_softmax(logits, dim=-1)
            probs = top_p_filter(logits, params.top_p).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            chosen = logp_all.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            for i in range(b):
                if reasons[i] is not None:
                    continue
                t = int(nxt[i])
                tokens[i].append(t)
                logps[i].append(float(chosen[i]))
                if t in stop_ids or any(
                    len(s) <= len(tokens[i]) and tokens[i][-len(s):] == s for s in params.stop_sequences
                ):
                    reasons[i] = "stop"
                elif params.abort_fn is not None and params.abort_fn(row_offset + i, tokens[i]):
                    reasons[i] = "aborted"
                elif len(tokens[i]) == params.max_tokens:
                    reasons[i] = "length"
            if all(r is not None for r in reasons) or step == params.max_tokens - 1:
                break
            valid[:, plen + step] = True
            step_mask = valid[:, : plen + step + 1].unsqueeze(1)
            hidden = model.hidden_states(
                nxt.unsqueeze(-1), position_ids=next_pos.unsqueeze(-1), attention_mask=step_mask, kv_cache=cache
            )[:, -1]
            next_pos = next_pos + 1
        model.train(was_training)
        return [Completion(tokens[i], logps[i], reasons[i] or "length") for i in range(b)]
