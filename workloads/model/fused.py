"""Fused torch ops for the ``kernels: torch`` path (CPU and any GPU; no Triton).

``linear_cross_entropy``: LM head + cross-entropy in row chunks whose gradient is computed in the
forward pass (the softmax is already there): max, exp and sum passes in place over one chunk
buffer instead of log-softmax forward + backward, no [N, V] logits or log-probs kept for backward, no
zero-filled [N, V] gradient from ``nll_loss``. Same three matmuls as the unfused op; results equal it to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
        grad_w = None if not needs_grad else torch.empty_like(weight, dtype=torch.float32) if n else \
            torch.zeros_like(weight, dtype=torch.float32)  # the first chunk's mm sets it
        # fp32: every chunk's logits go into one buffer (fresh [chunk, V] allocations cost page faults on CPU)
        buffer = torch.empty(min(chunk, n), v, dtype=hidden.dtype, device=hidden.device) \
            if hidden.dtype == torch.float32 else None
        # CPU: rows of ignored labels, whose gradient rows are zeroed (cheaper than a mask pass over [chunk, V])
        invalid = None if hidden.is_cuda else (~valid).nonzero().squeeze(1)
        for lo in range(0, n, chunk):
            h = hidden[lo : lo + chunk]
            rows = valid[lo : lo + chunk].unsqueeze(1)
            if buffer is None:
                logits = (h @ weight.t()).float()
            else:
                logits = torch.mm(h, weight.t(), out=buffer[: h.shape[0]])
            target = logits.gather(1, safe[lo : lo + chunk])
            top = logits.amax(dim=1, keepdim=True)
            expd = logits.sub_(top).exp_()  # in place: one [chunk, V] buffer for logits, exp and gradient
            sum_exp = expd.sum(dim=1, keepdim=True)
            lse = sum_exp.log().add_(top)
            total += torch.where(rows, lse - target, 0.0).sum()
            if needs_grad:  # d(sum CE)/d logits = softmax - onehot (rows of ignored labels: 0)
                grad = expd.div_(sum_exp)
                grad.scatter_add_(1, safe[lo : lo + chunk], -rows.float())
                if invalid is None:  # GPU: no host sync
                    grad.mul_(rows)
                elif (skip := invalid[(invalid >= lo) & (invalid < lo + chunk)] - lo).numel():
                    grad[skip] = 0.0
                grad = grad.to(hidden.dtype)
                torch.mm(grad, weight, out=grad_h[lo : lo + chunk])
                if lo == 0:
                    torch.mm(grad.t().float(), h.float(), out=grad_w)
                else:
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


CPU_ATTENTION_BLOCK = 48  # query rows per block: the [g*48, S] score tiles stay in cache (measured best on AVX2)
CPU_ATTENTION_MAX_SAVED = 64 * 2**20  # bytes of saved probabilities per layer above which SDPA's flash kernel runs


class _CausalAttention(torch.autograd.Function):
    """Causal GQA attention in query blocks: each block's scores cover only the keys up to its last row
    (half the work of a full mask), the probabilities are kept for backward (no recomputation)."""

    @staticmethod
    def forward(ctx, q, k, v, block: int):
        b, h, t, d = q.shape
        kv = k.shape[1]
        g, scale, bk = h // kv, d**-0.5, b * kv
        qg = q.reshape(b, kv, g, t, d)  # the g query heads of a kv head share its keys: one matmul for the group
        k3, v3 = k.reshape(bk, t, d), v.reshape(bk, t, d)
        out = torch.empty(b, kv, g, t, d, dtype=q.dtype, device=q.device)
        above = torch.full((block, block), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
        probs, queries = [], []
        for r0 in range(0, t, block):
            r1 = min(t, r0 + block)
            n = r1 - r0
            q_b = torch.mul(qg[:, :, :, r0:r1], scale).view(bk, g * n, d)  # scaled here, not the [n, S] scores
            s = torch.bmm(q_b, k3[:, :r1].transpose(1, 2)).view(b, kv, g, n, r1)
            s[..., r0:r1].add_(above[:n, :n])  # the diagonal tile: no attention to later positions
            p = torch.softmax(s, dim=-1).view(bk, g * n, r1)
            out[:, :, :, r0:r1] = torch.bmm(p, v3[:, :r1]).view(b, kv, g, n, d)
            probs.append(p)
            queries.append(q_b)
        ctx.block, ctx.n_blocks = block, len(probs)
        ctx.save_for_backward(k, v, out, *probs, *queries)
        return out.view(b, h, t, d)

    @staticmethod
    def backward(ctx, dout):
        k, v, out, *saved = ctx.saved_tensors
        probs, queries = saved[: ctx.n_blocks], saved[ctx.n_blocks :]
        b, kv, t, d = k.shape
        h = dout.shape[1]
        g, scale, bk = h // kv, d**-0.5, b * kv
        dog = dout.contiguous().view(b, kv, g, t, d)
        delta = (dog * out).sum(-1, keepdim=True)  # rowsum(dO * O) = rowsum(P * dP)
        k3s, v3 = k.reshape(bk, t, d) * scale, v.reshape(bk, t, d)
        dq = torch.empty(b, kv, g, t, d, dtype=k.dtype, device=k.device)
        dk = torch.zeros(bk, t, d, dtype=k.dtype, device=k.device)
        dv = torch.zeros(bk, t, d, dtype=k.dtype, device=k.device)
        for p, q_b, r0 in zip(probs, queries, range(0, t, ctx.block), strict=True):
            r1 = min(t, r0 + ctx.block)
            n = r1 - r0
            do_b = dog[:, :, :, r0:r1].reshape(bk, g * n, d)
            dv[:, :r1].baddbmm_(p.transpose(1, 2), do_b)
            ds = torch.bmm(do_b, v3[:, :r1].transpose(1, 2)).view(b, kv, g, n, r1)
            ds = ds.sub_(delta[:, :, :, r0:r1]).view(bk, g * n, r1).mul_(p)  # softmax backward
            dq[:, :, :, r0:r1] = torch.bmm(ds, k3s[:, :r1]).view(b, kv, g, n, d)
            dk[:, :r1].baddbmm_(ds.transpose(1, 2), q_b)
        return dq.view(b, h, t, d), dk.view(b, kv, t, d), dv.view(b, kv, t, d), None


def use_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> bool:
    """Whether :func:`causal_attention` beats SDPA here: CPU training in fp32/fp64 (no autocast) whose saved
    probabilities stay under ``CPU_ATTENTION_MAX_SAVED`` per layer (SDPA's CPU flash backward is ~1.7x slower
    at short context)."""
    if q.is_cuda or q.dtype not in (torch.float32, torch.float64) or q.shape[2] != k.shape[2]:
        return False
    if k.dtype != q.dtype or (v is not None and v.dtype != q.dtype) or torch.is_autocast_enabled("cpu"):
        return False
    if not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)):
        return False
    b, h, t, _ = q.shape
    return b * h * t * (t + CPU_ATTENTION_BLOCK) // 2 * q.element_size() <= CPU_ATTENTION_MAX_SAVED


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Causal self-attention with grouped kv heads, equal to SDPA's ``is_causal=True, enable_gqa=True``.

    Args:
        q: [B, H, T, D] queries (rotated).
        k: [B, KV, T, D] keys; H is a multiple of KV, query head ``i`` reads kv head ``i // (H // KV)``.
        v: [B, KV, T, D] values.
        block: query rows per block (default ``CPU_ATTENTION_BLOCK``).
    """
    return _CausalAttention.apply(q, k, v, block or CPU_ATTENTION_BLOCK)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) per half, into ``out`` (default: a new contiguous tensor of
    the promoted dtype, as ``x * cos`` gives: bf16 q/k with fp32 cos/sin under autocast stay fp32)."""
    half = x.shape[-1] // 2
    if out is None:
        out = torch.empty(x.shape, dtype=torch.promote_types(x.dtype, cos.dtype), device=x.device)
    x1, x2, o1, o2 = x[..., :half], x[..., half:], out[..., :half], out[..., half:]
    torch.mul(x1, cos, out=o1).sub_(x2 * sin)  # transformers' roundings: x*cos + rotate_half(x)*sin, no FMA
    torch.mul(x2, cos, out=o2).add_(x1 * sin)
    return out


class _Rope(torch.autograd.Function):
    """Rotate-half RoPE without the rotated copy; backward is the inverse rotation."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        half = x.shape[-1] // 2
        cos, sin = cos[..., :half].unsqueeze(1), sin[..., :half].unsqueeze(1)
        ctx.save_for_backward(cos, sin)
        ctx.dtype = x.dtype
        return _rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, -sin).to(ctx.dtype), None, None


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE into a contiguous [B, H, T, D] tensor (the layout attention reads).

    Args:
        x: [B, H, T, D] (any strides, e.g. a transposed view of the fused qkv projection).
        cos: [B, T, D] whose two halves are equal (``cat(freqs, freqs)``, as every family builds it).
        sin: [B, T, D], likewise.
    """
    return _Rope.apply(x, cos, sin)


class _QkvRope(torch.autograd.Function):
    """Split the fused q/k/v projection, rotate q and k; backward writes all three gradients into one
    [B, T, heads, D] tensor (no zero-filled slice gradients summed by autograd)."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, nh: int, nkv: int):
        half = qkv.shape[-1] // 2
        cos, sin = cos[..., :half].unsqueeze(1), sin[..., :half].unsqueeze(1)
        ctx.save_for_backward(cos, sin)
        ctx.nh, ctx.nkv, ctx.dtype = nh, nkv, qkv.dtype
        q = _rotate(qkv[:, :, :nh].transpose(1, 2), cos, sin)
        k = _rotate(qkv[:, :, nh : nh + nkv].transpose(1, 2), cos, sin)
        return q, k, qkv[:, :, nh + nkv :].transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dq, dk, dv):
        cos, sin = ctx.saved_tensors
        nh, nkv = ctx.nh, ctx.nkv
        b, h, t, d = dq.shape
        grad = torch.empty(b, t, nh + 2 * nkv, d, dtype=ctx.dtype, device=dq.device)
        _rotate(dq, cos, -sin, out=grad[:, :, :nh].transpose(1, 2))
        _rotate(dk, cos, -sin, out=grad[:, :, nh : nh + nkv].transpose(1, 2))
        grad[:, :, nh + nkv :].copy_(dv.transpose(1, 2))
        return grad, None, None, None, None


def qkv_rope(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, nh: int, nkv: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (rotated) and v, each contiguous [B, heads, T, D], from the fused projection.

    Args:
        qkv: [B, T, nh + 2 nkv, D], the heads of q, then k, then v.
        cos: [B, T, D] whose two halves are equal (``cat(freqs, freqs)``).
        sin: [B, T, D], likewise.
        nh: query heads.
        nkv: key/value heads.
    """
    return _QkvRope.apply(qkv, cos, sin, nh, nkv)


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up from the fused [.., 2F] gate/up projection; backward writes both halves of one
    gradient tensor (no cat of two gradients)."""

    @staticmethod
    def forward(ctx, gate_up):
        f = gate_up.shape[-1] // 2
        gate, up = gate_up[..., :f], gate_up[..., f:]
        act = F.silu(gate)
        ctx.save_for_backward(gate_up, act)
        return act * up

    @staticmethod
    def backward(ctx, grad):
        gate_up, act = ctx.saved_tensors
        f = gate_up.shape[-1] // 2
        gate, up = gate_up[..., :f], gate_up[..., f:]
        out = torch.empty_like(gate_up)
        torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=out[..., :f])
        torch.mul(act, grad, out=out[..., f:])
        return out


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up where ``gate_up`` is [..., 2F]: the gate's F columns, then the up projection's."""
    return _SwiGLU.apply(gate_up)


class _RMSNorm(torch.autograd.Function):
    """RMSNorm with the reference's forward roundings and a hand-written backward (fewer passes and
    temporaries than autograd's chain of pow, mean, rsqrt and muls)."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, rstd, weight)
        return weight * (x * rstd)

    @staticmethod
    def backward(ctx, grad):
        x, rstd, weight = ctx.saved_tensors
        xhat = x * rstd
        grad_w = (grad * xhat).reshape(-1, x.shape[-1]).sum(0)
        g = grad * weight
        mean = (g * xhat).mean(-1, keepdim=True)
        return torch.addcmul(g, xhat, mean, value=-1).mul_(rstd), grad_w, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / sqrt(mean(x^2) + eps)`` over the last dim, for fp32/fp64 ``x`` and ``weight`` of its dtype."""
    return _RMSNorm.apply(x, weight, eps)
