"""Shared helpers for the kernel tests."""

from __future__ import annotations

import pytest
import torch


def grads(outputs, inputs, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """Gradients of ``sum(out * r)`` for a fixed random ``r`` per output (same r for both impls)."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=gen).to(o.device, o.dtype) for o in outputs]
    return torch.autograd.grad(outputs, inputs, weights)


def leaf(*shape: int, device: torch.device, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(*shape, dtype=dtype) * scale).to(device).requires_grad_()


requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 and timing are GPU-only; the interpreter has no bf16)"
)
