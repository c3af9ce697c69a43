"""Trie packing: rollouts sharing a prefix (the prompt, and often part of the response)
are merged into a prefix tree and flattened depth-first into one row.

Token i attends token j iff j lies on i's root path; the position id is the depth.
Labels are *not* a roll of the flat ids: the log-prob of a node's token is read from its
parent's hidden state, so the last token of a shared prefix predicts the first token of
each child. Every rollout gathers its own per-token log-probs back through its node path,
so a loss computed per rollout has exactly the gradients of the unpacked computation.

Depth-first (pre-order) flattening makes the ancestor relation an interval test: j is an
ancestor of i (or i itself) iff ``j <= i <= subtree_end[j]``. Nothing here builds an
[M, M] mask: attention runs per *segment* (a maximal chain of single-child nodes) over
its ancestors' key ranges plus a causal block (``trie_attention.py``), or through a
FlexAttention block mask derived from the same interval test.

Several roots are several documents (positions restart at 0 and nothing crosses them);
a multi-turn trajectory is one sequence whose turns share prefixes with its siblings.
Trees larger than memory are split into micro-batches of whole rollouts by dynamic
programming over the depth-first order of branches (:func:`plan_micro_batches`); each
micro-batch re-computes the prefixes it needs, so summing the micro-batches' gradients
gives exactly the gradients of the unsplit computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedTrie:
    """A forest of rollouts flattened depth-first.

    Attributes:
        input_ids: [M] token of each node.
        position_ids: [M] depth of each node (roots at 0).
        parent: [M] flat index of the parent node, −1 for roots.
        subtree_end: [M] flat index of the last node in each node's subtree (pre-order).
        paths: per rollout, the flat node index of each of its tokens (len = rollout length).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    parent: torch.Tensor
    subtree_end: torch.Tensor
    paths: list[torch.Tensor]

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    def attention_mask(self) -> torch.Tensor:
        """[M, M] bool, True where query i may attend key j. Dense: for tests and tiny trees only."""
        idx = torch.arange(self.num_tokens)
        q, k = idx.unsqueeze(1), idx.unsqueeze(0)
        return (k <= q) & (q <= self.subtree_end.unsqueeze(0))

    def mask_mod(self, device: torch.device | str | None = None):
        """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` for this trie (O(M) memory)."""
        end = self.subtree_end.to(device)

        def trie_mask(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) & (q_idx <= end[kv_idx])

        return trie_mask

    def segments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Maximal single-child chains, vectorised.

        Returns:
            starts [S], ends [S] (exclusive) of each segment's flat range, and the parent
            segment of each segment (−1 for roots). A segment's parent node is always the
            last node of its parent segment, so its ancestors are whole segments.
        """
        m = self.num_tokens
        idx = torch.arange(m)
        parent = self.parent
        has_parent = parent >= 0
        n_children = torch.bincount(parent[has_parent], minlength=m) if m else torch.zeros(0, dtype=torch.long)
        prev_branches = torch.zeros(m, dtype=torch.bool)
        prev_branches[1:] = n_children[:-1] > 1
        is_start = (parent != idx - 1) | prev_branches
        if m:
            is_start[0] = True
        starts = is_start.nonzero().squeeze(-1)
        ends = torch.cat([starts[1:], torch.tensor([m])]) if m else starts.clone()
        seg_of = torch.cumsum(is_start.long(), 0) - 1
        p = parent[starts]
        seg_parent = torch.where(p >= 0, seg_of[p.clamp(min=0)], torch.full_like(p, -1))
        return starts, ends, seg_parent


def build_trie(sequences: list[list[int]]) -> PackedTrie:
    """Merge token sequences into a prefix forest and flatten it depth-first.

    Args:
        sequences: token ids of each rollout (prompt + response, or a whole multi-turn
            trajectory). Equal prefixes share nodes; different first tokens start new roots.
    """
    children: list[dict[int, int]] = [{}]  # node 0 is a virtual super-root
    tokens: list[int] = [-1]
    node_paths: list[list[int]] = []
    for seq in sequences:
        node, path = 0, []
        for tok in seq:
            nxt = children[node].get(tok)
            if nxt is None:
                nxt = len(tokens)
                children[node][tok] = nxt
                children.append({})
                tokens.append(tok)
            path.append(nxt)
            node = nxt
        node_paths.append(path)
    # Depth-first flattening (iterative; children in insertion order).
    flat_index = [-1] * len(tokens)
    order, parent_flat, depth = [], [], []
    stack = [(child, -1, 0) for child in reversed(list(children[0].values()))]
    while stack:
        node, parent, d = stack.pop()
        flat_index[node] = len(order)
        order.append(node)
        parent_flat.append(parent)
        depth.append(d)
        stack.extend((c, flat_index[node], d + 1) for c in reversed(list(children[node].values())))
    end = list(range(len(order)))
    for i in range(len(order) - 1, -1, -1):  # children follow parents: one reverse pass
        p = parent_flat[i]
        if p >= 0 and end[i] > end[p]:
            end[p] = end[i]
    return PackedTrie(
        input_ids=torch.tensor([tokens[n] for n in order], dtype=torch.long),
        position_ids=torch.tensor(depth, dtype=torch.long),
        parent=torch.tensor(parent_flat, dtype=torch.long),
        subtree_end=torch.tensor(end, dtype=torch.long),
        paths=[torch.tensor([flat_index[n] for n in p], dtype=torch.long) for p in node_paths],
    )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    ta, tb = torch.tensor(a[:n]), torch.tensor(b[:n])
    diff = (ta != tb).nonzero()
    return int(diff[0]) if len(diff) else n


def plan_micro_batches(
    sequences: list[list[int]], max_tokens: int | None = None, max_sequences: int | None = None,
    field: str = "max_tokens",
) -> list[list[int]]:
    """Split rollouts into micro-batches whose packed tries hold at most ``max_tokens`` nodes.

    Dynamic programming over the rollouts in depth-first (sorted) order of the whole trie:
    a contiguous run i..j of sorted sequences packs into ``Σ len − Σ lcp(k−1, k)`` nodes, so
    the plan that minimises the total packed tokens (prefixes re-computed in every
    micro-batch that needs them), then the number of micro-batches, is found exactly in O(n²).

    Args:
        sequences: token ids per rollout (prompt + response).
        max_tokens: node budget of one packed micro-batch (None: unbounded).
        max_sequences: at most this many rollouts per micro-batch (None: unbounded).
        field: the config field named in the error when one rollout alone exceeds the budget.

    Returns:
        Lists of rollout indices (into ``sequences``), each sorted, covering every rollout once.
    """
    n = len(sequences)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: (sequences[i], i))
    lens = torch.tensor([len(sequences[i]) for i in order], dtype=torch.long)
    if max_tokens is not None:
        too_long = int(lens.max())
        if too_long > max_tokens:
            raise ValueError(f"{field} ({max_tokens}) is smaller than one rollout ({too_long} tokens): "
                             "raise it or shorten the stage's maxResponseTokens")
    lcp = torch.zeros(n, dtype=torch.long)
    for k in range(1, n):
        lcp[k] = _common_prefix(sequences[order[k - 1]], sequences[order[k]])
    cum_len = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)])
    cum_lcp = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lcp, 0)])
    inf = torch.iinfo(torch.long).max // 4
    best = torch.full((n + 1,), inf, dtype=torch.long)  # key = tokens * (n + 1) + batches
    best[0] = 0
    back = torch.zeros(n + 1, dtype=torch.long)
    for j in range(1, n + 1):
        i = torch.arange(j)  # a micro-batch holding sorted rollouts i .. j-1
        tokens = (cum_len[j] - cum_len[i]) - (cum_lcp[j] - cum_lcp[i + 1])
        ok = best[i] < inf
        if max_tokens is not None:
            ok &= tokens <= max_tokens
        if max_sequences is not None:
            ok &= (j - i) <= max_sequences
        cand = torch.where(ok, best[i] + tokens * (n + 1) + 1, torch.full_like(tokens, inf))
        k = int(torch.argmin(cand))
        best[j], back[j] = cand[k], k
    plan, j = [], n
    while j > 0:
        i = int(back[j])
        plan.append(sorted(order[i:j]))
        j = i
    return plan[::-1]
