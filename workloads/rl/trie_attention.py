"""Attention over a flattened trie without an [M, M] mask.

:class:`SegmentAttention` is what the model's attention layers call (``mask.attend(q, k, v)``)
when the trie is passed as the attention mask. It runs one SDPA per segment (a maximal chain
of single-child nodes, see :meth:`PackedTrie.segments`): the segment's queries attend its
ancestors' keys in full and its own keys causally (lower-right causal alignment), which is
exactly the ancestor relation. Key ranges are contiguous runs of the flat row (ancestor
segments), so keys are sliced, never gathered node by node. Memory per layer is
O(M · dim) plus one segment's [L, ancestors + L] scores, never O(M²).

:func:`trie_block_mask` builds a FlexAttention ``BlockMask`` from the same interval test
(``kv <= q <= subtree_end[kv]``) for the compiled GPU kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codekiln.workloads.rl.trie import PackedTrie


def _merge_runs(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in runs:
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


class SegmentAttention:
    """Trie attention as a list of (query range, key runs) segments.

    Args:
        trie: the packed trie (only its structure is used).
    """

    def __init__(self, trie: PackedTrie) -> None:
        starts, ends, seg_parent = trie.segments()
        starts_l, ends_l, parent_l = starts.tolist(), ends.tolist(), seg_parent.tolist()
        self.num_tokens = trie.num_tokens
        runs_of: list[list[tuple[int, int]]] = []
        self.segments: list[tuple[int, int, list[tuple[int, int]]]] = []
        for s, e, p in zip(starts_l, ends_l, parent_l, strict=True):
            ancestors = runs_of[p] if p >= 0 else []
            own = _merge_runs([*ancestors, (s, e)])
            runs_of.append(own)
            self.segments.append((s, e, own))
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def _mask(self, q_len: int, k_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Additive lower-right causal mask (0 / −inf): every query sees all ancestors and its own chain
        causally. One tensor per shape, shared by all segments and layers (SDPA keeps a reference for
        backward instead of converting a boolean mask per call: half the memory, about twice as fast on CPU)."""
        key = (q_len, k_len, dtype, str(device))
        mask = self._masks.get(key)
        if mask is None:
            allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
            mask = torch.zeros(q_len, k_len, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
            self._masks[key] = mask
        return mask

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output [B, H, M, D] for q [B, H, M, D] and k, v [B, H_kv, M, D] (GQA allowed)."""
        gqa = k.shape[1] != q.shape[1]
        outs = []
        for s, e, runs in self.segments:
            qs = q[:, :, s:e]
            if len(runs) == 1:
                ks, vs = k[:, :, runs[0][0]:runs[0][1]], v[:, :, runs[0][0]:runs[0][1]]
            else:
                ks = torch.cat([k[:, :, a:b] for a, b in runs], dim=2)
                vs = torch.cat([v[:, :, a:b] for a, b in runs], dim=2)
            if ks.shape[2] == e - s:  # a root chain: plain causal, SDPA's fused kernel
                out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=gqa)
            else:
                out = F.scaled_dot_product_attention(
                    qs, ks, vs, attn_mask=self._mask(e - s, ks.shape[2], q.dtype, q.device), enable_gqa=gqa
                )
            outs.append(out)
        return torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]


def trie_block_mask(trie: PackedTrie, device: torch.device | str, block_size: int = 128):
    """A FlexAttention BlockMask for the trie, from the O(M) interval test (no dense mask)."""
    from torch.nn.attention.flex_attention import create_block_mask

    m = trie.num_tokens
    compile_ok = torch.device(device).type == "cuda"
    return create_block_mask(trie.mask_mod(device), 1, None, m, m, device=device, BLOCK_SIZE=block_size,
                             _compile=compile_ok)
