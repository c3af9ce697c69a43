"""Fused selected-token log-prob + entropy from hidden states and the lm-head weight.

One streaming pass over vocabulary tiles keeps, per row, m = max z, s = sum e^(z-m) and
t = sum e^(z-m) z (z = logits / temperature), giving log p_y = z_y - m - log s and
H = m + log s - t/s. Backward recomputes each chunk's logits and writes
dz_j = g_lp (1[j=y] - p_j) - g_H p_j (z_j - t/s) in place; nothing of size [N, V] is kept.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codekiln.kernels._chunks import add_chunk_grads, check_inputs, chunk_rows
from codekiln.kernels._runtime import check_device, num_warps, vocab_block


@triton.jit
def _lpe_fwd(
    LOGITS, LABELS, LOGP, ENT, LSE, MEAN_Z, n_rows, vocab, inv_temp,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    safe_rows = tl.minimum(rows, n_rows - 1)
    labels = tl.load(LABELS + safe_rows).to(tl.int32)
    row_ptr = LOGITS + safe_rows.to(tl.int64)[:, None] * vocab
    m = tl.full([BLOCK_R], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_R], tl.float32)
    t = tl.zeros([BLOCK_R], tl.float32)
    z_label = tl.zeros([BLOCK_R], tl.float32)
    for start in range(0, vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        col_ok = cols[None, :] < vocab
        z = tl.load(row_ptr + cols[None, :], mask=col_ok, other=0.0).to(tl.float32) * inv_temp  # 0 off-vocab
        z_max = tl.where(col_ok, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z_max, axis=1))
        alpha = tl.exp(m - m_new)
        e = tl.exp(z_max - m_new[:, None])  # 0 off-vocab, so e * z is too
        s = s * alpha + tl.sum(e, axis=1)
        t = t * alpha + tl.sum(e * z, axis=1)
        m = m_new
        z_label += tl.sum(tl.where(cols[None, :] == labels[:, None], z, 0.0), axis=1)
    lse = m + tl.log(s)
    mean_z = t / s
    tl.store(LOGP + rows, z_label - lse, mask=row_ok)
    tl.store(ENT + rows, lse - mean_z, mask=row_ok)
    tl.store(LSE + rows, lse, mask=row_ok)
    tl.store(MEAN_Z + rows, mean_z, mask=row_ok)


@triton.jit
def _lpe_bwd(
    LOGITS, LABELS, G_LOGP, G_ENT, LSE, MEAN_Z, n_rows, vocab, inv_temp,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    labels = tl.load(LABELS + rows, mask=row_ok, other=0).to(tl.int32)
    g_lp = tl.load(G_LOGP + rows, mask=row_ok, other=0.0)
    g_h = tl.load(G_ENT + rows, mask=row_ok, other=0.0)
    lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
    mean_z = tl.load(MEAN_Z + rows, mask=row_ok, other=0.0)
    row_ptr = LOGITS + rows.to(tl.int64)[:, None] * vocab
    for start in range(0, vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = row_ok[:, None] & (cols[None, :] < vocab)
        z = tl.load(row_ptr + cols[None, :], mask=mask, other=0.0).to(tl.float32) * inv_temp
        p = tl.exp(z - lse[:, None])
        onehot = tl.where(cols[None, :] == labels[:, None], 1.0, 0.0)
        dz = g_lp[:, None] * (onehot - p) - g_h[:, None] * p * (z - mean_z[:, None])
        tl.store(row_ptr + cols[None, :], dz * inv_temp, mask=mask)


class TokenLogprobsEntropyFunction(torch.autograd.Function):
    """(log p(label), entropy) per row of ``hidden @ weight.T / temperature``; grads for hidden, weight."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature: float, chunk_size: int | None):
        h2, y = check_inputs("token_logprobs_entropy", hidden, weight, labels, None)
        n_rows, vocab = h2.shape[0], weight.shape[0]
        out = torch.empty((4, n_rows), dtype=torch.float32, device=h2.device)  # logp, entropy, lse, mean_z
        block_r, block_v = vocab_block(vocab)
        warps = num_warps(block_r * block_v)
        w = weight if weight.dtype == h2.dtype else weight.to(h2.dtype)
        step = chunk_rows(n_rows, vocab, h2.shape[1], chunk_size)
        for start in range(0, n_rows, step):
            end = min(start + step, n_rows)
            logits = h2[start:end] @ w.t()
            o = out[:, start:end]
            _lpe_fwd[(triton.cdiv(end - start, block_r),)](
                logits, y[start:end], o[0], o[1], o[2], o[3], end - start, vocab, 1.0 / temperature,
                BLOCK_R=block_r, BLOCK_V=block_v, num_warps=warps,
            )
        ctx.save_for_backward(h2, weight, y, out[2].clone(), out[3].clone())
        ctx.temperature, ctx.step, ctx.hidden_shape = temperature, step, hidden.shape
        return out[0].clone(), out[1].clone()

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        h2, weight, y, lse, mean_z = ctx.saved_tensors
        n_rows, vocab = h2.shape[0], weight.shape[0]
        zeros = torch.zeros(n_rows, dtype=torch.float32, device=h2.device)
        g_logp = zeros if g_logp is None else g_logp.reshape(-1).float().contiguous()
        g_ent = zeros if g_ent is None else g_ent.reshape(-1).float().contiguous()
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h2) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        block_r, block_v = vocab_block(vocab)
        warps = num_warps(block_r * block_v)
        w = weight if weight.dtype == h2.dtype else weight.to(h2.dtype)
        for start in range(0, n_rows, ctx.step):
            end = min(start + ctx.step, n_rows)
            h_c = h2[start:end]
            logits = h_c @ w.t()
            _lpe_bwd[(triton.cdiv(end - start, block_r),)](
                logits, y[start:end], g_logp[start:end], g_ent[start:end], lse[start:end], mean_z[start:end],
                end - start, vocab, 1.0 / ctx.temperature, BLOCK_R=block_r, BLOCK_V=block_v, num_warps=warps,
            )
            add_chunk_grads(logits, h_c, w, grad_h[start:end] if need_h else None, grad_w)
        return (
            grad_h.view(ctx.hidden_shape) if need_h else None,
            grad_w.to(weight.dtype) if need_w else None,
            None, None, None,
        )


def token_logprobs_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label and the entropy at each position: two fp32 [N] tensors (N = labels.numel()).

    hidden [..., D], weight [V, D], labels [...] in [0, V). Differentiable in hidden and weight.
    """
    if not temperature > 0:
        raise ValueError(f"token_logprobs_entropy: temperature must be > 0, got {temperature}")
    check_device(hidden, weight, labels)
    return TokenLogprobsEntropyFunction.apply(hidden, weight, labels, temperature, chunk_size)
