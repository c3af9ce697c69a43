"""Qwen MoE tensor names: per-expert ``experts.{e}.{gate,up,down}_proj.weight`` on disk (the Hub and vLLM
layout) <-> our stacked ``experts.gate_up_proj`` [E, 2I, D] / ``experts.down_proj`` [E, D, I]; the router is
``mlp.gate.weight`` and the shared expert ``mlp.shared_expert.*`` + ``mlp.shared_expert_gate.weight`` in both.
transformers 5's fused in-memory names are accepted on load as well."""

from __future__ import annotations

import warnings

import torch

from codekiln.workloads.model.family import StateDictAdapter


class QwenMoEStateDictAdapter(StateDictAdapter):
    """Splits/stacks experts; the aux-free routing bias has no transformers field and is not exported."""

    def to_hf(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        biased = [k for k, v in state.items() if k.endswith(".expert_bias") and bool(v.abs().sum() > 0)]
        if biased:
            warnings.warn("moe.balancing aux_free: the routing bias is not part of the Qwen MoE format; the export "
                          "routes by the unbiased scores (as DeepSeek-V3 would need e_score_correction_bias)",
                          stacklevel=2)
        return super().to_hf(state)
