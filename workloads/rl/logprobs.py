"""Per-token log-probs and entropies of rollouts under the policy, unpacked or trie-packed.

Both paths return the same layout: ``logp`` and ``entropy`` [N, R] aligned with the
right-padded responses (0 at padding), so the losses never know how they were computed.
"""

from __future__ import annotations

import torch

from codekiln.workloads.model import ops
from codekiln.workloads.rl.trie import build_trie
from codekiln.workloads.rl.trie_attention import SegmentAttention, trie_block_mask


def token_logprobs_entropy(hidden, weight, labels, temperature: float, kernels: str):
    """``ops.token_logprobs_entropy``, kept in fp64 for fp64 models (exactness tests); fp32 otherwise."""
    if hidden.dtype == torch.float64 and kernels == "torch":
        logp = torch.log_softmax((hidden @ weight.t()) / temperature, dim=-1)
        return logp.gather(-1, labels.reshape(-1, 1)).squeeze(-1), -(logp.exp() * logp).sum(-1)
    return ops.token_logprobs_entropy(hidden, weight, labels, temperature=temperature, kernels=kernels)


def _scatter_rows(values: torch.Tensor, lengths: list[int], width: int) -> torch.Tensor:
    """Flat [sum(lengths)] -> right-padded [N, width]."""
    out = values.new_zeros(len(lengths), width)
    rows = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    cols = torch.cat([torch.arange(n) for n in lengths]) if lengths else torch.zeros(0, dtype=torch.long)
    return out.index_put((rows, cols), values)


def response_logprobs_unpacked(
    model, prompts: list[list[int]], responses: list[list[int]], temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference path: each rollout is its own right-padded row with a causal mask."""
    device = model.lm_head.weight.device
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, device=device)
    hidden = model.hidden_states(ids)
    rows, src, labels = [], [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        n = len(r)
        rows.append(torch.full((n,), i, dtype=torch.long))
        src.append(torch.arange(len(p) - 1, len(p) - 1 + n))  # position t-1 predicts token t
        labels.append(torch.tensor(r, dtype=torch.long))
    rows_t, src_t = torch.cat(rows).to(device), torch.cat(src).to(device)
    h = hidden[rows_t, src_t]
    logp, ent = token_logprobs_entropy(
        h, model.output_weight(), torch.cat(labels).to(device), temperature, model.cfg.kernels
    )
    lengths = [len(r) for r in responses]
    width_r = max(lengths) if lengths else 0
    return _scatter_rows(logp, lengths, width_r), _scatter_rows(ent, lengths, width_r)


TRIE_ATTENTION = ("auto", "segments", "flex", "dense")


def trie_attention_mask(trie, device: torch.device, mode: str = "auto", model_attention: str = "auto"):
    """What the model's attention layers receive for a packed trie.

    ``segments``: per-segment SDPA over ancestor key ranges (O(M) memory, CPU and GPU);
    ``flex``: a FlexAttention BlockMask from the interval test (compiled on GPU);
    ``dense``: the [1, M, M] boolean mask (reference, small trees only);
    ``auto``: flex on CUDA when the model's attention is flex, else segments.
    """
    if mode not in TRIE_ATTENTION:
        raise ValueError(f"trie attention must be one of {TRIE_ATTENTION}, got {mode!r}")
    if mode == "auto":
        mode = "flex" if device.type == "cuda" and model_attention == "flex" else "segments"
    if mode == "segments":
        return SegmentAttention(trie)
    if mode == "flex":
        return trie_block_mask(trie, device)
    return trie.attention_mask().to(device).unsqueeze(0)


def response_logprobs_packed(
    model, prompts: list[list[int]], responses: list[list[int]], temperature: float = 1.0,
    attention: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trie-packed path: one row, trie attention, depth positions, per-node log-probs
    computed once (from the parent's hidden state) and gathered back per rollout.

    Args:
        model: the policy (``hidden_states`` / ``lm_head``).
        prompts: prompt ids per rollout (no loss; at least one token each).
        responses: response ids per rollout (log-probs returned for every token; mask
            tool-output tokens of multi-turn trajectories in the loss, not here).
        temperature: logits are divided by it.
        attention: see :func:`trie_attention_mask`.
    """
    device = model.lm_head.weight.device
    for p in prompts:
        if not p:
            raise ValueError("every prompt needs at least one token")
    trie = build_trie([p + r for p, r in zip(prompts, responses, strict=True)])
    mask = trie_attention_mask(trie, device, attention, getattr(model.cfg, "attention", "auto"))
    hidden = model.hidden_states(
        trie.input_ids.unsqueeze(0).to(device),
        position_ids=trie.position_ids.unsqueeze(0).to(device),
        attention_mask=mask,
    )[0]
    # Only nodes that are response tokens of some rollout need a log-prob.
    resp_nodes = [path[len(p):] for path, p in zip(trie.paths, prompts, strict=True)]
    flat = torch.cat(resp_nodes) if resp_nodes else torch.zeros(0, dtype=torch.long)
    nodes, gather = torch.unique(flat, return_inverse=True)
    node_logp, node_ent = token_logprobs_entropy(
        hidden[trie.parent[nodes].to(device)], model.output_weight(), trie.input_ids[nodes].to(device),
        temperature, model.cfg.kernels,
    )
    gather = gather.to(device)
    lengths = [len(r) for r in responses]
    width_r = max(lengths) if lengths else 0
    return _scatter_rows(node_logp[gather], lengths, width_r), _scatter_rows(node_ent[gather], lengths, width_r)


def response_logprobs(model, prompts, responses, temperature: float = 1.0, packed: bool = True):
    """Dispatch to the packed (segment trie attention) or unpacked path."""
    if packed:
        return response_logprobs_packed(model, prompts, responses, temperature)
    return response_logprobs_unpacked(model, prompts, responses, temperature)
