"""The shared decoder of every family: RMSNorm, RoPE (all scaling types), SwiGLU or MoE, GQA.

Family switches (``ModelConfig``): q/k/v biases (Qwen2), per-head q/k RMSNorm (Qwen3), tied
embeddings, NormHead, MoE blocks (Qwen2-MoE / Qwen3-MoE). Parameter names follow
transformers' ``*ForCausalLM`` minus ``model.`` (the family's state-dict adapter maps the
rest, e.g. per-expert tensors); RoPE uses the rotate-half convention for the same reason.
Position ids always come from the batch (packed documents restart at 0; trie packing uses
depth).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # torch < 2.5
    create_block_mask = flex_attention = None

from codekiln.workloads.model import fused, ops
from codekiln.workloads.model.config import ModelConfig, RopeScalingConfig
from codekiln.workloads.model.moe import MoE, RouterStats, load_balancing_loss
from codekiln.workloads.model.rope import dynamic_inv_freq, rope_init, rope_inv_freq

__all__ = ["KVCache", "Transformer", "rope_inv_freq"]


def document_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] document ids -> [B, T, T] bool mask: causal and within the same document."""
    t = document_ids.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=document_ids.device).tril()
    same_doc = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
    return causal & same_doc


@functools.cache
def _flex(cuda: bool):
    """flex_attention, compiled on GPU (eager on CPU: a slow reference path)."""
    return torch.compile(flex_attention, dynamic=False) if cuda else flex_attention


def block_mask_from_dense(mask: torch.Tensor):
    """A FlexAttention BlockMask equal to a dense [B, T, S] bool mask (blocks with no True are skipped)."""
    if create_block_mask is None:
        raise RuntimeError("model.attention 'flex' needs torch.nn.attention.flex_attention (torch >= 2.5)")
    b, t, s = mask.shape

    def mask_mod(batch, head, q_idx, kv_idx):
        return mask[batch, q_idx, kv_idx]

    return create_block_mask(mask_mod, b, None, t, s, device=mask.device)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, kernels: str = "torch") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.kernels = kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, self.eps, self.kernels)


class KVCache:
    """Preallocated per-layer key/value cache for incremental decoding."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device):
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.length = 0  # tokens already stored
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v for the new tokens; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} > {self.max_len}")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=cfg.out_bias)
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's q and k, before RoPE
            self.q_norm = RMSNorm(hd, cfg.norm_eps, cfg.kernels)
            self.k_norm = RMSNorm(hd, cfg.norm_eps, cfg.kernels)

    def forward(self, x, cos, sin, mask, kv_cache: KVCache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        hd, nh, nkv = self.cfg.head_dim, self.cfg.n_heads, self.cfg.n_kv_heads
        # one matmul for q, k and v (the weights stay separate parameters, named as transformers names them)
        bias = None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]), bias)
        qkv = qkv.view(b, t, nh + 2 * nkv, hd)
        if self.cfg.qk_norm or self.cfg.kernels != "torch":
            v = qkv[:, :, nh + nkv :].transpose(1, 2)
            q, k = qkv[:, :, :nh], qkv[:, :, nh : nh + nkv]
            if self.cfg.qk_norm:  # Qwen3: per-head RMSNorm before RoPE
                q, k = self.q_norm(q), self.k_norm(k)
            # RoPE writes q and k contiguous in [B, heads, T, D], the layout attention reads (no copy there)
            q = ops.apply_rope(q.transpose(1, 2), cos, sin, self.cfg.kernels)
            k = ops.apply_rope(k.transpose(1, 2), cos, sin, self.cfg.kernels)
        else:  # split + rotate in one op whose backward fills one qkv gradient
            q, k, v = fused.qkv_rope(qkv, cos, sin, nh, nkv)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        if isinstance(mask, torch.Tensor) or mask is None:  # SDPA; GQA without copying k/v per query head
            if mask is None and self.cfg.kernels == "torch" and fused.use_causal_attention(q, k, v):
                out = fused.causal_attention(q, k, v.contiguous())  # CPU training: blocked, probabilities kept
            elif mask is None:  # plain causal, no cache: SDPA's fused causal kernel
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nkv != nh)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1), enable_gqa=nkv != nh)
        elif hasattr(mask, "attend"):  # structured attention (e.g. the RL trie's segments): no dense mask
            out = mask.attend(q, k, v)
        else:  # a FlexAttention BlockMask
            out = _flex(q.is_cuda)(q, k, v, block_mask=mask, enable_gqa=nkv != nh)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, nh * hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, ffn_dim: int | None = None) -> None:
        super().__init__()
        self.kernels = cfg.kernels
        ffn_dim = ffn_dim or cfg.ffn_dim
        self.gate_proj = nn.Linear(cfg.dim, ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight]))  # one matmul
        if self.kernels == "torch":  # one gradient tensor for both halves in backward
            return self.down_proj(fused.swiglu(gate_up))
        return self.down_proj(ops.swiglu(*gate_up.chunk(2, dim=-1), self.kernels))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.mlp = MoE(cfg, lambda ffn: MLP(cfg, ffn)) if cfg.is_sparse_layer(layer) else MLP(cfg)

    def forward(self, x, cos, sin, mask, kv_cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LMHead(nn.Linear):
    """The output projection; with NormHead its rows are normalised to unit length at every use."""

    def __init__(self, dim: int, vocab: int, norm: bool) -> None:
        super().__init__(dim, vocab, bias=False)
        self.norm = norm

    def effective_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=-1) if self.norm else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight())


class Transformer(nn.Module):
    """The code model. ``forward`` returns logits; ``hidden_states`` stops before the LM head.

    MoE models leave each sparse layer's router statistics of the last forward behind:
    ``moe_loss()`` (weighted load-balancing + z-loss, as a tensor to add to the loss),
    ``moe_metrics()`` (expert load, dropped tokens) and ``update_moe_bias()`` (aux-free balancing,
    call after each optimizer step).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.norm_head and cfg.tie_embeddings:
            raise ValueError("normHead with tieEmbeddings: the head cannot be normalised and shared at once")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.lm_head = LMHead(cfg.dim, cfg.vocab_size, cfg.norm_head)
        inv_freq, self.attention_scaling = rope_init(cfg)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MoE):
                nn.init.normal_(module.experts.gate_up_proj, std=std)
                nn.init.normal_(module.experts.down_proj, std=std / math.sqrt(2 * self.cfg.n_layers))
        for block in self.layers:  # scaled init of residual projections
            nn.init.normal_(block.self_attn.o_proj.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
            if isinstance(block.mlp, MLP):
                nn.init.normal_(block.mlp.down_proj.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def tie_weights(self) -> None:
        """Share the head with the embeddings (after loading a state dict into a tied model)."""
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def output_weight(self) -> torch.Tensor:
        """The LM head's effective [vocab, dim] weight (normalised rows under NormHead)."""
        return self.lm_head.effective_weight()

    def set_rope_theta(self, theta: float) -> None:
        """Change the RoPE base (stages extending the context raise it); updates ``cfg``."""
        self.set_rope(theta, self.cfg.rope_scaling)

    def set_rope(self, theta: float, scaling: RopeScalingConfig | None) -> None:
        """Change the RoPE base and scaling (context-extension stages); updates ``cfg``."""
        self.cfg = self.cfg.model_copy(update={"rope_theta": theta, "rope_scaling": scaling})
        inv_freq, self.attention_scaling = rope_init(self.cfg)
        self.inv_freq.copy_(inv_freq.to(self.inv_freq.device))

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        scaling = self.cfg.rope_scaling
        if scaling is not None and scaling.type == "dynamic":
            seq_len = position_ids.max() + 1
            if int(seq_len) > self.cfg.max_seq_len:  # transformers recomputes the base past maxSeqLen
                inv_freq = dynamic_inv_freq(self.cfg, seq_len.to(torch.int64))
        freqs = position_ids.unsqueeze(-1).float() * inv_freq.float().to(position_ids.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_scaling != 1.0:
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states [B, T, dim].

        Masking, most specific first: ``attention_mask`` [B, T, S] bool (True = may
        attend; S includes cached tokens), else ``document_ids`` [B, T] (causal within
        each packed document), else plain causal.
        """
        b, t = input_ids.shape
        past = kv_cache.length if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device).expand(b, t)
        flex = self.cfg.attention == "flex"
        if attention_mask is None:
            if document_ids is not None:
                attention_mask = document_causal_mask(document_ids)
            elif past or flex:
                attention_mask = torch.ones(t, past + t, dtype=torch.bool, device=input_ids.device).tril(past)
                attention_mask = attention_mask.expand(b, t, past + t)
        if flex and not input_ids.is_cuda and torch.is_grad_enabled() and self.training:
            raise RuntimeError("model.attention 'flex' has no backward on CPU: use 'sdpa' (same results) to train")
        if flex and isinstance(attention_mask, torch.Tensor):  # (structured masks pass through)
            attention_mask = block_mask_from_dense(attention_mask)
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope(position_ids, x.dtype)
        for block in self.layers:
            if self.cfg.activation_checkpointing and self.training and kv_cache is None:
                x = checkpoint(block, x, cos, sin, attention_mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, attention_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.length += t
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        """Logits [B, T, vocab]. Keyword arguments as for ``hidden_states``."""
        return self.lm_head(self.hidden_states(input_ids, **kwargs))

    # ------------------------------------------------------------------ MoE
    def moe_layers(self) -> list[MoE]:
        return [block.mlp for block in self.layers if isinstance(block.mlp, MoE)]

    def router_stats(self) -> list[RouterStats]:
        """Each sparse layer's statistics of the last forward."""
        return [layer.last for layer in self.moe_layers() if layer.last is not None]

    def aux_loss(self) -> torch.Tensor | None:
        """transformers' load-balancing loss of the last forward (unweighted), or None for dense models."""
        stats = self.router_stats()
        return load_balancing_loss(stats, self.cfg.moe.num_experts) if stats else None

    def moe_loss(self) -> torch.Tensor | float:
        """``auxLossCoef · aux_loss + zLossCoef · mean z-loss`` of the last forward (0.0 for dense models)."""
        stats = self.router_stats()
        if not stats:
            return 0.0
        m = self.cfg.moe
        loss = m.aux_loss_coef * load_balancing_loss(stats, m.num_experts) if m.aux_loss_coef else 0.0
        if m.z_loss_coef:
            loss = loss + m.z_loss_coef * torch.stack([s.z_loss for s in stats]).mean()
        return loss

    @torch.no_grad()
    def moe_metrics(self) -> dict[str, float]:
        """Expert load of the last forward: imbalance (max/mean), dropped-token fraction, capacity."""
        stats = self.router_stats()
        if not stats:
            return {}
        counts = torch.stack([s.counts for s in stats])  # [layers, E]
        assigned = float(counts.sum())
        dropped = sum(s.dropped for s in stats)
        load = counts.sum(0) / counts.sum()
        return {
            "moe_load_imbalance": float((counts.max(1).values / counts.mean(1).clamp(min=1e-9)).mean()),
            "moe_min_expert_load": float(load.min()),
            "moe_max_expert_load": float(load.max()),
            "moe_dropped_tokens": float(dropped),
            "moe_dropped_fraction": dropped / max(assigned, 1.0),
            "moe_capacity": float(stats[0].capacity or 0),
        }

    def update_moe_bias(self) -> None:
        """Aux-loss-free balancing: nudge every sparse layer's routing bias (no-op otherwise)."""
        for layer in self.moe_layers():
            layer.update_bias()

    def num_params(self, exclude_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # a tied head counts once
        return n - self.embed_tokens.weight.numel() if exclude_embeddings else n
