"""Fused torch ops for the ``kernels: torch`` path (CPU and any GPU; no Triton).

``linear_cross_entropy``: LM head + cross-entropy in row chunks whose gradient is computed in the
forward pass (the softmax is already there): one ``exp`` pass per chunk instead of log-softmax
forward + backward, no [N, V] logits or log-probs kept for backward, no zero-filled [N, V] gradient
from ``nll_loss``. Same three matmuls as the unfused op; results equal it to float rounding.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 2 * 2**20  # CPU: logits per chunk (8 MiB in fp32: the exp pass runs from cache; measured best)
GPU_CHUNK_ELEMENTS = 64 * 2**20  # GPU: large matmuls, few launches


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index: int, needs_grad: bool):
        n, v = hidden.shape[0], weight.shape[0]
        chunk = max(1, (GPU_CHUNK_ELEMENTS if hidden.is_cuda else CHUNK_ELEMENTS) // v)
        valid = labels != ignore_index
        safe = torch.where(valid, labels, 0).unsqueeze(1)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if needs_grad else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if needs_grad else None
        for lo in range(0, n, chunk):
            h = hidden[lo : lo + chunk]
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            mask = valid[lo : lo + chunk].unsqueeze(1).float()
            total += ((lse - logits.gather(1, safe[lo : lo + chunk])) * mask).sum()
            if needs_grad:  # d(sum CE)/d logits = softmax - onehot (rows of ignored labels: 0)
                grad = logits.sub_(lse).exp_()
                grad.scatter_add_(1, safe[lo : lo + chunk], -mask)
                grad.mul_(mask)
                grad = grad.to(hidden.dtype)
                torch.mm(grad, weight, out=grad_h[lo : lo + chunk])
                grad_w.addmm_(grad.t().float(), h.float())
        if needs_grad:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), grad_w * grad_out.to(grad_w.dtype), None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                         ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels`` ("sum" or "mean" over non-ignored labels).

    Args:
        hidden: [N, D] rows.
        weight: [V, D] output projection.
        labels: [N] target ids; ``ignore_index`` rows carry no loss.
        ignore_index: the label of rows without a target.
        reduction: "sum" or "mean".
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"fused linear_cross_entropy: reduction must be sum or mean, got {reduction!r}")
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total = _LinearCrossEntropy.apply(hidden, weight, labels.reshape(-1), ignore_index, needs_grad)
    if reduction == "mean":
        total = total / (labels != ignore_index).sum().clamp(min=1)
    return total
