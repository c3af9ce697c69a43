"""Rotate-half RoPE: one Triton kernel for forward and backward (the transpose rotation).

The model builds ``cos``/``sin`` [B, T, D] from the batch's position ids (so packed and
trie-packed sequences get their own positions) and scaled inverse frequencies; see
:func:`codekiln.kernels.reference.rope_cos_sin`. ``x`` may be a strided view
(e.g. ``q.view(B, T, H, D).transpose(1, 2)``); ``cos``/``sin`` may be broadcast views.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codekiln.kernels._runtime import check_device, num_warps, row_block


@triton.jit
def _rope_kernel(
    X, COS, SIN, Y,
    n_rows, n_heads, seq_len, half,
    sxb, sxh, sxt, sxd,
    scb, sct, scd,
    ssb, sst, ssd,
    BACKWARD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # flattened (b, h, t)
    cols = tl.arange(0, BLOCK_H)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols[None, :] < half)
    t = rows % seq_len
    h = (rows // seq_len) % n_heads
    b = rows // (seq_len * n_heads)
    x_base = (b * sxb + h * sxh + t * sxt)[:, None]
    c_base = (b * scb + t * sct)[:, None]
    s_base = (b * ssb + t * sst)[:, None]
    c1_off, c2_off = cols[None, :], cols[None, :] + half
    x1 = tl.load(X + x_base + c1_off * sxd, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(X + x_base + c2_off * sxd, mask=mask, other=0.0).to(tl.float32)
    cos1 = tl.load(COS + c_base + c1_off * scd, mask=mask, other=0.0).to(tl.float32)
    cos2 = tl.load(COS + c_base + c2_off * scd, mask=mask, other=0.0).to(tl.float32)
    sin1 = tl.load(SIN + s_base + c1_off * ssd, mask=mask, other=0.0).to(tl.float32)
    sin2 = tl.load(SIN + s_base + c2_off * ssd, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:  # transpose of the rotation below
        y1 = x1 * cos1 + x2 * sin2
        y2 = x2 * cos2 - x1 * sin1
    else:  # y = x * cos + rotate_half(x) * sin
        y1 = x1 * cos1 - x2 * sin1
        y2 = x2 * cos2 + x1 * sin2
    y_base = rows[:, None] * (2 * half)
    tl.store(Y + y_base + c1_off, y1, mask=mask)
    tl.store(Y + y_base + c2_off, y2, mask=mask)


def _launch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    b, h, t, d = x.shape
    y = torch.empty((b, h, t, d), dtype=x.dtype, device=x.device)
    n_rows, half = b * h * t, d // 2
    block_r, block_h = row_block(half)
    _rope_kernel[(triton.cdiv(n_rows, block_r),)](
        x, cos, sin, y, n_rows, h, t, half,
        *x.stride(), *cos.stride(), *sin.stride(),
        BACKWARD=backward, BLOCK_R=block_r, BLOCK_H=block_h, num_warps=num_warps(block_r * block_h),
    )
    return y


class RoPEFunction(torch.autograd.Function):
    """Rotate-half RoPE with the gradient for ``x`` (``cos``/``sin`` are constants)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        check_device(x, cos, sin)
        if x.dim() != 4 or x.shape[-1] % 2:
            raise ValueError(f"apply_rope: x must be [B, H, T, D] with even D, got {tuple(x.shape)}")
        b, _, t, d = x.shape
        for name, c in (("cos", cos), ("sin", sin)):
            if c.dim() != 3 or c.shape[1:] != (t, d) or c.shape[0] not in (1, b):
                raise ValueError(f"apply_rope: {name} must be [B, T, D]=[{b}, {t}, {d}], got {tuple(c.shape)}")
        if cos.requires_grad or sin.requires_grad:
            raise ValueError("apply_rope (triton): cos/sin must not require grad; use kernels='torch'")
        cos, sin = cos.expand(b, t, d), sin.expand(b, t, d)
        ctx.save_for_backward(cos, sin)
        return _launch(x, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        cos, sin = ctx.saved_tensors
        return _launch(dy, cos, sin, backward=True), None, None


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Triton rotate-half RoPE. x [B, H, T, D] (any strides); cos/sin [B, T, D]."""
    return RoPEFunction.apply(x, cos, sin)
