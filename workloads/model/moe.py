"""Mixture-of-experts MLP: top-k softmax routing, tokens grouped by expert, grouped matmul.

Routing (Qwen2-MoE / Qwen3-MoE): ``probs = softmax(x·Wᵣ)`` in fp32, top-k, optionally
renormalised (``normTopkProb``); Qwen2-MoE adds a shared expert scaled by
``sigmoid(x·w_g)``. DeepSeek-V3's auxiliary-loss-free balancing (``balancing: aux_free``)
adds a per-expert bias to the scores for *selection only* and nudges it after each
optimizer step towards equal load.

Compute: the (token, slot) pairs are sorted by expert (stable ``argsort``), the token rows
gathered once into contiguous per-expert groups, both SwiGLU matmuls run as one grouped
matmul each (``torch._grouped_mm`` where torch has it, else one matmul per expert over its
contiguous group), and the weighted results scattered back with ``index_add_`` — no Python
loop over tokens. With ``capacityFactor`` each expert takes at most
``ceil(factor·tokens·topK/experts)`` rows (earliest tokens first); the rest are dropped and
counted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from codekiln.workloads.model import ops
from codekiln.workloads.model.config import ModelConfig

_GROUPED_MM = hasattr(torch, "_grouped_mm")


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient dense (grouped_mm rejects stride-0 grads)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def _use_grouped_mm(x: torch.Tensor) -> bool:
    if not _GROUPED_MM:
        return False
    if x.device.type == "cpu":
        return True
    return x.device.type == "cuda" and x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device)[0] >= 9


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` [M, in] grouped by expert (``counts`` [E] rows each) times ``weight[e]``ᵀ ([E, out, in]).

    Args:
        x: expert-sorted rows.
        weight: per-expert weights in nn.Linear layout.
        counts: rows per expert.
        offsets: ``cumsum(counts)`` as int32 (group ends).
    """
    weight = weight.to(x.dtype)  # autocast does not cover grouped_mm: match the activations (bf16 on GPU)
    if _use_grouped_mm(x):
        return _DenseGrad.apply(torch._grouped_mm(x, weight.transpose(1, 2), offs=offsets))
    outs = [F.linear(chunk, weight[e]) for e, chunk in enumerate(torch.split(x, counts.tolist())) if chunk.numel()]
    return torch.cat(outs) if outs else x.new_zeros(0, weight.shape[1])


class Experts(nn.Module):
    """All routed experts' SwiGLU weights as 3-D tensors (transformers 5's in-memory layout)."""

    def __init__(self, n: int, dim: int, ffn: int, kernels: str) -> None:
        super().__init__()
        self.kernels = kernels
        self.gate_up_proj = nn.Parameter(torch.empty(n, 2 * ffn, dim))  # gate rows first, then up
        self.down_proj = nn.Parameter(torch.empty(n, dim, ffn))

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """``x`` [M, dim] sorted by expert, ``counts`` [E] -> [M, dim]."""
        offsets = torch.cumsum(counts, 0).to(torch.int32)
        gate, up = grouped_linear(x, self.gate_up_proj, counts, offsets).chunk(2, dim=-1)
        return grouped_linear(ops.swiglu(gate, up, self.kernels), self.down_proj, counts, offsets)


class RouterStats:
    """What one MoE layer's forward leaves for the losses and metrics."""

    __slots__ = ("counts", "prob_sum", "rows", "z_loss", "dropped", "capacity", "logits")

    def __init__(self, counts, prob_sum, rows, z_loss, dropped, capacity, logits) -> None:
        self.counts, self.prob_sum, self.rows, self.z_loss = counts, prob_sum, rows, z_loss
        self.dropped, self.capacity, self.logits = dropped, capacity, logits


class MoE(nn.Module):
    """Sparse MLP of one block. Parameter names follow transformers' Qwen MoE blocks."""

    def __init__(self, cfg: ModelConfig, mlp_factory) -> None:
        super().__init__()
        m = cfg.moe
        self.moe, self.kernels = m, cfg.kernels
        self.gate = nn.Linear(cfg.dim, m.num_experts, bias=False)  # the router
        self.experts = Experts(m.num_experts, cfg.dim, m.expert_ffn_dim, cfg.kernels)
        if m.shared_expert_ffn_dim:
            self.shared_expert = mlp_factory(m.shared_expert_ffn_dim)
            if m.shared_expert_gate:
                self.shared_expert_gate = nn.Linear(cfg.dim, 1, bias=False)
        if m.balancing == "aux_free":
            self.register_buffer("expert_bias", torch.zeros(m.num_experts))
        self.register_buffer("load_counts", torch.zeros(m.num_experts), persistent=False)
        self.keep_router_logits = False
        self.last: RouterStats | None = None

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fp32 probs [N, E], top-k weights [N, k] in the logits' dtype, expert ids [N, k])."""
        m = self.moe
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        if m.balancing == "aux_free":
            _, index = torch.topk(probs + self.expert_bias, m.top_k, dim=-1)
            weights = probs.gather(-1, index)
        else:
            weights, index = torch.topk(probs, m.top_k, dim=-1)
        if m.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return probs, weights.to(logits.dtype), index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.moe
        shape = x.shape
        h = x.reshape(-1, shape[-1])
        n = h.shape[0]
        logits = F.linear(h, self.gate.weight)
        probs, weights, index = self.route(logits)
        flat = index.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=m.num_experts)
        selected = counts.detach().float()  # before capacity, as the aux loss counts them
        capacity, dropped = None, 0
        if m.capacity_factor is not None:
            capacity = max(1, math.ceil(m.capacity_factor * n * m.top_k / m.num_experts))
            starts = torch.cumsum(counts, 0) - counts
            sorted_expert = flat[order]
            rank = torch.arange(order.numel(), device=h.device) - starts[sorted_expert]
            keep = rank < capacity
            dropped = int(order.numel() - keep.sum())
            if dropped:
                order = order[keep]
                counts = counts.clamp(max=capacity)
        token = order // m.top_k
        out = self.experts(h[token], counts)
        out = out * weights.reshape(-1)[order].unsqueeze(-1)
        y = torch.zeros_like(h).index_add_(0, token, out.to(h.dtype))
        if hasattr(self, "shared_expert"):
            shared = self.shared_expert(h)
            if hasattr(self, "shared_expert_gate"):
                shared = torch.sigmoid(self.shared_expert_gate(h)) * shared
            y = y + shared
        if self.training:
            self.load_counts += selected
        z_loss = torch.logsumexp(logits.float(), dim=-1).pow(2).mean() if m.z_loss_coef else None
        self.last = RouterStats(selected, probs.sum(0), n, z_loss, dropped, capacity,
                                logits if self.keep_router_logits else None)
        return y.reshape(shape)

    @torch.no_grad()
    def update_bias(self) -> None:
        """aux_free: move each expert's bias by ±speed towards the mean load (all ranks agree)."""
        if self.moe.balancing != "aux_free":
            return
        counts = self.load_counts.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        if counts.sum() > 0:
            self.expert_bias += self.moe.bias_update_speed * torch.sign(counts.mean() - counts)
        self.load_counts.zero_()


def load_balancing_loss(stats: list[RouterStats], num_experts: int) -> torch.Tensor:
    """transformers' Switch-style loss over all sparse layers together.

    ``E · Σₑ (assignments to e / rows) · (probability mass of e / rows)`` with rows and both sums
    accumulated over every layer before the product (as transformers concatenates the layers).
    """
    counts = torch.stack([s.counts for s in stats]).sum(0)
    prob = torch.stack([s.prob_sum for s in stats]).sum(0)
    rows = float(sum(s.rows for s in stats))
    return torch.sum((counts / rows) * (prob / rows)) * num_experts
