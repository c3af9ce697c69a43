"""Decoder-only Llama-3 style transformer: RMSNorm, RoPE, SwiGLU, GQA, untied embeddings.

Parameter names follow Hugging Face's ``LlamaForCausalLM`` so export is a rename-free
copy; RoPE uses the rotate-half convention for the same reason. Position ids always
come from the batch (packed documents restart at 0; trie packing uses depth).
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

from codekiln.workloads.model import ops
from codekiln.workloads.model.config import ModelConfig


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies, with Llama-3 scaling when ``cfg.rope_scaling`` is set."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    scaling = cfg.rope_scaling
    if scaling is None:
        return inv_freq
    low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


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
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask, kv_cache: KVCache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        hd, nh, nkv = self.cfg.head_dim, self.cfg.n_heads, self.cfg.n_kv_heads
        q = self.q_proj(x).view(b, t, nh, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, nkv, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, nkv, hd).transpose(1, 2)
        q, k = ops.apply_rope(q, cos, sin, self.cfg.kernels), ops.apply_rope(k, cos, sin, self.cfg.kernels)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        if isinstance(mask, torch.Tensor) or mask is None:  # SDPA; GQA without copying k/v per query head
            if mask is None:  # plain causal, no cache: SDPA's fused causal kernel
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nkv != nh)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1), enable_gqa=nkv != nh)
        else:  # a FlexAttention BlockMask
            out = _flex(q.is_cuda)(q, k, v, block_mask=mask, enable_gqa=nkv != nh)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, nh * hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kernels = cfg.kernels
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(ops.swiglu(self.gate_proj(x), self.up_proj(x), self.kernels))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, kv_cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    """The code model. ``forward`` returns logits; ``hidden_states`` stops before the LM head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.kernels)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(cfg).float(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
        for block in self.layers:  # scaled init of residual projections
            nn.init.normal_(block.self_attn.o_proj.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
            nn.init.normal_(block.mlp.down_proj.weight, std=std / math.sqrt(2 * self.cfg.n_layers))

    def set_rope_theta(self, theta: float) -> None:
        """Change the RoPE base (stages extending the context raise it); updates ``cfg``."""
        self.cfg = self.cfg.model_copy(update={"rope_theta": theta})
        self.inv_freq.copy_(rope_inv_freq(self.cfg).float().to(self.inv_freq.device))

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

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
        if flex and attention_mask is not None:
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

    def num_params(self, exclude_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.weight.numel() if exclude_embeddings else n
