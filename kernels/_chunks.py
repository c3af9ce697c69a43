"""Token chunking shared by the two lm-head kernels (linear CE and log-prob + entropy).

Both compute ``hidden[chunk] @ weight.T`` for one chunk of tokens at a time, run a
Triton kernel that streams over vocabulary tiles of that chunk's logits (overwriting
them with d loss / d logits), and fold the chunk's gradient into ``grad_hidden`` and
``grad_weight``. Only one chunk's logits exist at any time.
"""

from __future__ import annotations

import torch
import triton


def chunk_rows(n_rows: int, vocab: int, dim: int, chunk_size: int | None = None) -> int:
    """Tokens per chunk: chunk logits about the size of ``hidden`` (Liger's rule), 256..8192 rows."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    rows = triton.next_power_of_2(triton.cdiv(n_rows, triton.cdiv(vocab, dim)))
    return max(1, min(max(rows, 256), 8192, n_rows))


def check_inputs(
    op: str, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``hidden``/``labels`` and raise a clear error on bad shapes or labels."""
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"{op}: hidden [..., {hidden.shape[-1]}] does not match weight {tuple(weight.shape)}")
    h2 = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1)
    if y.shape[0] != h2.shape[0]:
        raise ValueError(f"{op}: {y.shape[0]} labels for {h2.shape[0]} hidden rows")
    if y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{op}: labels must be int64 or int32, got {y.dtype}")
    bad = (y < 0) | (y >= weight.shape[0])
    if ignore_index is not None:
        bad &= y != ignore_index
    if bool(bad.any()):
        raise ValueError(f"{op}: labels must lie in [0, {weight.shape[0]}) or equal ignore_index")
    return h2.contiguous(), y.contiguous()


def add_chunk_grads(
    dlogits: torch.Tensor,
    h_chunk: torch.Tensor,
    weight: torch.Tensor,
    grad_h_chunk: torch.Tensor | None,
    grad_w: torch.Tensor | None,
) -> None:
    """grad_h[chunk] = dlogits @ W; grad_W (fp32) += dlogits.T @ h[chunk]."""
    if grad_h_chunk is not None:
        torch.mm(dlogits, weight, out=grad_h_chunk)
    if grad_w is not None:
        if dlogits.dtype == torch.float32:
            grad_w.addmm_(dlogits.t(), h_chunk.float() if h_chunk.dtype != torch.float32 else h_chunk)
        else:
            grad_w.add_(torch.mm(dlogits.t(), h_chunk).float())
