"""SwiGLU ``silu(gate) * up``: elementwise Triton forward/backward, recomputing in backward."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codekiln.kernels._runtime import check_device, interpreting


@triton.jit
def _swiglu_fwd(G, U, Y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, g * tl.sigmoid(g) * u, mask=mask)


@triton.jit
def _swiglu_bwd(DY, G, U, DG, DU, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    silu = g * sig
    tl.store(DU + offs, dy * silu, mask=mask)
    tl.store(DG + offs, dy * u * sig * (1.0 + g * (1.0 - sig)), mask=mask)


def _block() -> int:
    return 1 << 18 if interpreting() else 1024


class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) * up with gradients for both inputs."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        check_device(gate, up)
        if gate.shape != up.shape:
            raise ValueError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ in shape")
        g, u = gate.contiguous(), up.contiguous()
        y = torch.empty_like(g, dtype=torch.result_type(g, u))
        n, block = g.numel(), _block()
        _swiglu_fwd[(triton.cdiv(n, block),)](g, u, y, n, BLOCK=block)
        ctx.save_for_backward(g, u)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        g, u = ctx.saved_tensors
        dy = dy.contiguous()
        dg, du = torch.empty_like(g), torch.empty_like(u)
        n, block = g.numel(), _block()
        _swiglu_bwd[(triton.cdiv(n, block),)](dy, g, u, dg, du, n, BLOCK=block)
        return dg, du


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton ``silu(gate) * up`` (same shapes)."""
    return SwiGLUFunction.apply(gate, up)
