"""KAT-Dev tree-structured trajectory training: trajectories sharing prefixes form one prefix tree.

All trajectories of a micro-batch (the same task's rollouts share the system prompt, the problem
statement and often the first turns) are merged into a trie and run as one packed row (tree
attention mask, depth positions; ``codekiln.workloads.rl.trie``). Each node's token is predicted
once, from its parent's hidden state, and its loss is weighted by the number of trajectories that
train on it — so the loss and its gradients are exactly those of training on every trajectory
separately, while shared prefixes are computed once.

A trajectory longer than the model's context is split into sub-task samples
(:func:`split_subtasks`): each keeps the shared task prefix and a window of consecutive turns
ending at the turn it trains, so the pieces again share the prefix in the tree.
"""

from __future__ import annotations

import torch

from codekiln.workloads.model import ops
from codekiln.workloads.rl.trie import build_trie


def tree_token_loss(model, sequences: list[list[int]], masks: list[list[bool]]) -> tuple[torch.Tensor, int]:
    """Summed −log p over the trained tokens of all sequences, computed on their prefix tree.

    Args:
        model: the policy (``hidden_states`` with ``position_ids`` and ``attention_mask``).
        sequences: token ids of each trajectory.
        masks: per token, True where it is a training target (its first token never is: nothing predicts it).

    Returns:
        (loss sum, number of trained tokens counted with multiplicity).
    """
    device = model.lm_head.weight.device
    trie = build_trie(sequences)
    weight = torch.zeros(trie.num_tokens, dtype=torch.float32)
    for path, mask in zip(trie.paths, masks, strict=True):
        m = torch.tensor(mask, dtype=torch.bool)
        m[0] = False
        weight.index_add_(0, path[m], torch.ones(int(m.sum())))
    nodes = weight.nonzero().squeeze(-1)
    if nodes.numel() == 0:
        return torch.zeros((), device=device, requires_grad=True), 0
    hidden = model.hidden_states(
        trie.input_ids.unsqueeze(0).to(device), position_ids=trie.position_ids.unsqueeze(0).to(device),
        attention_mask=trie.attention_mask().unsqueeze(0).to(device),
    )[0]
    logp, _ = ops.token_logprobs_entropy(hidden[trie.parent[nodes].to(device)], model.lm_head.weight,
                                         trie.input_ids[nodes].to(device), kernels=model.cfg.kernels)
    w = weight[nodes].to(logp)
    return -(w * logp).sum(), int(weight.sum())


def unpacked_token_loss(model, sequences: list[list[int]], masks: list[list[bool]]) -> tuple[torch.Tensor, int]:
    """Reference path: every sequence its own causal row (same result as :func:`tree_token_loss`)."""
    device = model.lm_head.weight.device
    total, count = torch.zeros((), device=device), 0
    for seq, mask in zip(sequences, masks, strict=True):
        ids = torch.tensor(seq, device=device).unsqueeze(0)
        m = torch.tensor(mask[1:], dtype=torch.bool)
        if not bool(m.any()):
            continue
        hidden = model.hidden_states(ids)[0][:-1][m.to(device)]
        logp, _ = ops.token_logprobs_entropy(hidden, model.lm_head.weight, ids[0, 1:][m.to(device)],
                                             kernels=model.cfg.kernels)
        total = total - logp.sum()
        count += int(m.sum())
    return total, count


def split_subtasks(tokens: list[int], mask: list[bool], turn_starts: list[int], prefix_len: int,
                   max_tokens: int) -> list[tuple[list[int], list[bool]]]:
    """Split a long trajectory into sub-task samples of at most ``max_tokens`` tokens.

    Args:
        tokens, mask: the trajectory and its loss mask.
        turn_starts: token index where each turn (assistant message + its observations) begins.
        prefix_len: length of the shared task prefix (system + problem statement), kept in every sample.
        max_tokens: the context length.

    Each sample is the prefix, then as many whole turns before turn k as fit, then turn k; only
    turn k's tokens are trained in it. A trajectory that fits is returned unchanged.
    """
    if len(tokens) <= max_tokens:
        return [(list(tokens), list(mask))]
    if prefix_len >= max_tokens:
        raise ValueError(f"the task prefix ({prefix_len} tokens) does not fit the context ({max_tokens})")
    bounds = [*turn_starts, len(tokens)]
    out = []
    for k in range(len(turn_starts)):
        lo, hi = bounds[k], bounds[k + 1]
        hi = min(hi, lo + max_tokens - prefix_len)  # a single over-long turn is truncated
        start = lo
        for j in range(k - 1, -1, -1):  # add earlier turns while they fit
            if prefix_len + (hi - bounds[j]) > max_tokens:
                break
            start = bounds[j]
        ids = tokens[:prefix_len] + tokens[start:hi]
        m = [False] * prefix_len + [False] * (lo - start) + mask[lo:hi]
        out.append((ids, m))
    return out
