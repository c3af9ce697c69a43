"""Trie packing: rollouts sharing a prefix (the prompt, and often part of the response)
are merged into a prefix tree and flattened depth-first into one row.

Token i attends token j iff j lies on i's root path; the position id is the depth.
Labels are *not* a roll of the flat ids: the log-prob of a node's token is read from its
parent's hidden state, so the last token of a shared prefix predicts the first token of
each child. Every rollout gathers its own per-token log-probs back through its node path,
so a loss computed per rollout has exactly the gradients of the unpacked computation.
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
        paths: per rollout, the flat node index of each of its tokens (len = rollout length).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    parent: torch.Tensor
    paths: list[torch.Tensor]

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    def attention_mask(self) -> torch.Tensor:
        """[M, M] bool, True where query i may attend key j (j an ancestor of i, or i itself)."""
        m = self.num_tokens
        mask = torch.eye(m, dtype=torch.bool)
        parent = self.parent.tolist()
        # DFS order puts every parent before its children, so one pass suffices.
        for i in range(m):
            p = parent[i]
            if p >= 0:
                mask[i] |= mask[p]
        return mask


def build_trie(sequences: list[list[int]]) -> PackedTrie:
    """Merge token sequences into a prefix forest and flatten it depth-first."""
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
    return PackedTrie(
        input_ids=torch.tensor([tokens[n] for n in order], dtype=torch.long),
        position_ids=torch.tensor(depth, dtype=torch.long),
        parent=torch.tensor(parent_flat, dtype=torch.long),
        paths=[torch.tensor([flat_index[n] for n in p], dtype=torch.long) for p in node_paths],
    )
