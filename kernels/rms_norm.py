"""RMSNorm: Triton forward/backward and its autograd Function.

Forward saves the per-row ``rstd``; backward recomputes ``x * rstd`` and reduces the
weight gradient per program into a ``[programs, D]`` buffer summed by torch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codekiln.kernels._runtime import check_device, num_warps, row_block


@triton.jit
def _rms_norm_fwd(X, W, Y, RSTD, n_rows, n_cols, eps, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    offs = rows[:, None] * n_cols + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    w = tl.load(W + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    x_hat = (x * rstd[:, None]).to(X.dtype.element_ty).to(tl.float32)  # same rounding as the reference
    tl.store(Y + offs, x_hat * w[None, :], mask=mask)
    tl.store(RSTD + rows, rstd, mask=rows < n_rows)


@triton.jit
def _rms_norm_bwd(
    DY, X, W, RSTD, DX, DW_PARTIAL, n_rows, n_cols, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    offs = rows[:, None] * n_cols + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=rows < n_rows, other=0.0)
    w = tl.load(W + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    x_hat = x * rstd[:, None]
    wdy = w[None, :] * dy
    # d/dx [x * rstd(x)] applied to wdy: rstd * (wdy - x_hat * mean(wdy * x_hat))
    c = tl.sum(wdy * x_hat, axis=1) / n_cols
    dx = rstd[:, None] * (wdy - x_hat * c[:, None])
    tl.store(DX + offs, dx, mask=mask)
    tl.store(DW_PARTIAL + pid * n_cols + cols, tl.sum(dy * x_hat, axis=0), mask=cols < n_cols)


class RMSNormFunction(torch.autograd.Function):
    """y = weight * (x / rms(x)) over the last dim; gradients for x and weight."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        check_device(x, weight)
        shape, n_cols = x.shape, x.shape[-1]
        if weight.shape != (n_cols,):
            raise ValueError(f"rms_norm: weight shape {tuple(weight.shape)} does not match last dim {n_cols}")
        x2 = x.reshape(-1, n_cols).contiguous()
        n_rows = x2.shape[0]
        out_dtype = torch.result_type(x, weight)
        y = torch.empty((n_rows, n_cols), dtype=out_dtype, device=x.device)
        rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
        block_r, block_c = row_block(n_cols)
        grid = (triton.cdiv(n_rows, block_r),)
        _rms_norm_fwd[grid](
            x2, weight, y, rstd, n_rows, n_cols, eps,
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=num_warps(block_r * block_c),
        )
        ctx.save_for_backward(x2, weight, rstd)
        ctx.shape = shape
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x2, weight, rstd = ctx.saved_tensors
        n_rows, n_cols = x2.shape
        dy2 = dy.reshape(n_rows, n_cols).contiguous()
        dx = torch.empty_like(x2)
        block_r, block_c = row_block(n_cols)
        n_prog = triton.cdiv(n_rows, block_r)
        dw_partial = torch.empty((n_prog, n_cols), dtype=torch.float32, device=x2.device)
        _rms_norm_bwd[(n_prog,)](
            dy2, x2, weight, rstd, dx, dw_partial, n_rows, n_cols,
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=num_warps(block_r * block_c),
        )
        dw = dw_partial.sum(0).to(weight.dtype)
        return dx.view(ctx.shape), dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Triton RMSNorm over the last dim of ``x`` ([..., D]) with ``weight`` [D]."""
    return RMSNormFunction.apply(x, weight, eps)
