"""Qwen2-MoE / Qwen3-MoE config.json <-> ModelConfig.

Qwen2-MoE: q/k/v biases (``qkv_bias``), routed experts + one shared expert scaled by
``sigmoid(shared_expert_gate(x))``. Qwen3-MoE: q/k RMSNorm, no shared expert. Both:
``num_experts``, ``num_experts_per_tok``, ``norm_topk_prob``, ``decoder_sparse_step``,
``mlp_only_layers``, ``router_aux_loss_coef``. Training-only options (z-loss, capacity,
aux-free bias) have no config.json field: they stay in ``codekiln_model``.
"""

from __future__ import annotations

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.family import common_config, common_hf_config, moe_fields, require


def from_hf(hf: dict, folder: str) -> ModelConfig:
    """A Qwen MoE config.json as a ModelConfig (family from ``architectures``)."""
    if hf.get("architectures", [""])[0].startswith("Qwen2Moe"):
        bias = bool(hf.get("qkv_bias", True))
        return common_config(hf, folder, "qwen2_moe", qkv_bias=bias, out_bias=False, qk_norm=False,
                             moe=moe_fields(hf, folder, shared=True))
    bias = bool(hf.get("attention_bias", False))
    return common_config(hf, folder, "qwen3_moe", qkv_bias=bias, out_bias=bias, qk_norm=True,
                         moe=moe_fields(hf, folder, shared=False))


def to_hf(cfg: ModelConfig) -> dict:
    """The Qwen2-MoE or Qwen3-MoE config.json of ``cfg``."""
    m = cfg.moe
    if m is None:
        raise ValueError(f"model.moe must be set for family {cfg.family}")
    common = {"num_experts": m.num_experts, "num_experts_per_tok": m.top_k, "moe_intermediate_size": m.expert_ffn_dim,
              "norm_topk_prob": m.norm_topk_prob, "decoder_sparse_step": m.sparse_step,
              "mlp_only_layers": list(m.dense_layers), "router_aux_loss_coef": m.aux_loss_coef,
              "output_router_logits": False, "use_sliding_window": False, "sliding_window": None,
              "max_window_layers": cfg.n_layers}
    if cfg.family == "qwen2_moe":
        require(cfg, "qwen2_moe", qk_norm=False, out_bias=False)
        if not m.shared_expert_ffn_dim or not m.shared_expert_gate:
            raise ValueError("model.moe.sharedExpertFfnDim > 0 with sharedExpertGate true is required by qwen2_moe "
                             "(use qwen3_moe for routed experts only)")
        out = common_hf_config(cfg, "Qwen2MoeForCausalLM", "qwen2_moe")
        out.update(common, qkv_bias=bool(cfg.qkv_bias), shared_expert_intermediate_size=m.shared_expert_ffn_dim)
        return out
    require(cfg, "qwen3_moe", qk_norm=True, out_bias=cfg.qkv_bias)
    if m.shared_expert_ffn_dim:
        raise ValueError("model.moe.sharedExpertFfnDim: qwen3_moe has no shared expert (use qwen2_moe)")
    out = common_hf_config(cfg, "Qwen3MoeForCausalLM", "qwen3_moe")
    out.update(common, attention_bias=bool(cfg.qkv_bias))
    return out
