"""Fused linear + cross-entropy (Liger-style): chunked over tokens, tiled over the vocabulary.

Forward computes the loss and, when gradients are needed, d loss / d hidden and
d loss / d weight in the same pass (each chunk's logits buffer is overwritten with its
gradient), so backward only scales them by the incoming scalar. Peak extra memory is
one ``[chunk, V]`` logits buffer instead of several ``[N, V]`` tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codekiln.kernels._chunks import add_chunk_grads, check_inputs, chunk_rows
from codekiln.kernels._runtime import check_device, num_warps, vocab_block


@triton.jit
def _ce_kernel(
    LOGITS, LABELS, LOSS, n_rows, vocab, ignore_index, grad_scale,
    COMPUTE_GRAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    safe_rows = tl.minimum(rows, n_rows - 1)  # padding rows re-read the last row: no inf - inf
    labels = tl.load(LABELS + safe_rows).to(tl.int32)
    valid = row_ok & (labels != ignore_index)
    row_ptr = LOGITS + safe_rows.to(tl.int64)[:, None] * vocab
    m = tl.full([BLOCK_R], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_R], tl.float32)
    z_label = tl.zeros([BLOCK_R], tl.float32)
    for start in range(0, vocab, BLOCK_V):  # pass 1: online log-sum-exp and the label's logit
        cols = start + tl.arange(0, BLOCK_V)
        col_ok = cols[None, :] < vocab
        z = tl.load(row_ptr + cols[None, :], mask=col_ok, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, axis=1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new[:, None]), axis=1)
        m = m_new
        z_label += tl.sum(tl.where(cols[None, :] == labels[:, None], z, 0.0), axis=1)
    lse = m + tl.log(s)
    tl.store(LOSS + rows, tl.where(valid, lse - z_label, 0.0), mask=row_ok)
    if COMPUTE_GRAD:  # pass 2: logits <- (softmax - onehot) * scale, in place
        scale = tl.where(valid, grad_scale, 0.0)
        for start in range(0, vocab, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = row_ok[:, None] & (cols[None, :] < vocab)
            z = tl.load(row_ptr + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            p = tl.exp(z - lse[:, None])
            grad = (p - tl.where(cols[None, :] == labels[:, None], 1.0, 0.0)) * scale[:, None]
            tl.store(row_ptr + cols[None, :], grad, mask=mask)


def _run_chunks(h2, w, y, ignore_index: int, step: int, grad_scale: float, loss_rows, grad_h, grad_w,
                row_scale: torch.Tensor | None = None) -> None:
    """One pass over token chunks: per-row losses and, when buffers are given, the gradients.

    ``row_scale`` multiplies each row's d loss / d logits (the upstream gradient of ``reduction="none"``).
    """
    n_rows, vocab = h2.shape[0], w.shape[0]
    block_r, block_v = vocab_block(vocab)
    warps = num_warps(block_r * block_v)
    compute_grad = grad_h is not None or grad_w is not None
    for start in range(0, n_rows, step):
        end = min(start + step, n_rows)
        h_c = h2[start:end]
        logits = h_c @ w.t()
        _ce_kernel[(triton.cdiv(end - start, block_r),)](
            logits, y[start:end], loss_rows[start:end], end - start, vocab, ignore_index, grad_scale,
            COMPUTE_GRAD=compute_grad, BLOCK_R=block_r, BLOCK_V=block_v, num_warps=warps,
        )
        if compute_grad:
            if row_scale is not None:
                logits.mul_(row_scale[start:end, None].to(logits.dtype))
            add_chunk_grads(logits, h_c, w, grad_h[start:end] if grad_h is not None else None, grad_w)
        del logits


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy of ``hidden @ weight.T``; gradients for hidden and weight.

    ``mean``/``sum``: gradients are computed in the forward pass (backward only scales them).
    ``none``: per-token losses; backward recomputes each chunk's logits, scaled row by row by
    the upstream gradient (nothing of size ``[N, V]`` or ``[N, D]`` is kept from forward).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index: int, reduction: str, chunk_size: int | None, grad: bool):
        h2, y = check_inputs("linear_cross_entropy", hidden, weight, labels, ignore_index)
        n_rows, vocab = h2.shape[0], weight.shape[0]
        w = weight if weight.dtype == h2.dtype else weight.to(h2.dtype)  # e.g. fp32 master weight, bf16 hidden
        step = chunk_rows(n_rows, vocab, h2.shape[1], chunk_size)
        loss_rows = torch.empty(n_rows, dtype=torch.float32, device=h2.device)
        ctx.reduction = reduction
        if reduction == "none":
            _run_chunks(h2, w, y, ignore_index, step, 1.0, loss_rows, None, None)
            ctx.ignore_index, ctx.step = ignore_index, step
            ctx.hidden_shape, ctx.weight_dtype = hidden.shape, weight.dtype
            ctx.save_for_backward(h2, w, y)
            return loss_rows.view(labels.shape)
        n_valid = (y != ignore_index).sum()
        need_h = grad and ctx.needs_input_grad[0]
        need_w = grad and ctx.needs_input_grad[1]
        grad_scale = 1.0 / max(int(n_valid), 1) if reduction == "mean" else 1.0
        grad_h = torch.empty_like(h2) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        _run_chunks(h2, w, y, ignore_index, step, grad_scale, loss_rows, grad_h, grad_w)
        loss = loss_rows.sum()
        if reduction == "mean":
            loss = loss / n_valid  # nan when every label is ignored, as in torch
        ctx.save_for_backward(
            grad_h.view(hidden.shape) if need_h else None, grad_w.to(weight.dtype) if need_w else None
        )
        return loss

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.reduction == "none":
            h2, w, y = ctx.saved_tensors
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_h = torch.empty_like(h2) if need_h else None
            grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
            scratch = torch.empty(h2.shape[0], dtype=torch.float32, device=h2.device)
            _run_chunks(h2, w, y, ctx.ignore_index, ctx.step, 1.0, scratch, grad_h, grad_w,
                        row_scale=grad_out.reshape(-1).float())
            grad_h = grad_h.view(ctx.hidden_shape) if need_h else None
            grad_w = grad_w.to(ctx.weight_dtype) if need_w else None
            return grad_h, grad_w, None, None, None, None, None
        grad_h, grad_w = ctx.saved_tensors
        if bool(grad_out == 1):  # loss.backward() directly: no V x D copy
            return grad_h, grad_w, None, None, None, None, None
        grad_h = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        grad_w = grad_w * grad_out.to(grad_w.dtype) if grad_w is not None else None
        return grad_h, grad_w, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Fused ``cross_entropy(hidden @ weight.T, labels)``; hidden [..., D], weight [V, D], labels [...].

    Args:
        ignore_index: labels equal to this contribute neither loss nor gradient.
        reduction: ``"mean"`` (over non-ignored labels), ``"sum"``, or ``"none"`` (per token, shaped
            like ``labels``; ignored tokens are 0).
        chunk_size: tokens per chunk (default: logits chunk about the size of ``hidden``).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"linear_cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    check_device(hidden, weight, labels)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return LinearCrossEntropyFunction.apply(hidden, weight, labels, ignore_index, reduction, chunk_size, grad)
