"""Qwen MoE families (Qwen2-MoE with a gated shared expert, Qwen3-MoE with q/k norm): config, model, adapter."""

from codekiln.workloads.model.family import FamilySpec
from codekiln.workloads.model.qwen_moe.config import from_hf, to_hf
from codekiln.workloads.model.qwen_moe.model import build
from codekiln.workloads.model.qwen_moe.state_dict_adapter import QwenMoEStateDictAdapter

SPEC = FamilySpec("qwen_moe", {"Qwen2MoeForCausalLM": "qwen2_moe", "Qwen3MoeForCausalLM": "qwen3_moe"},
                  from_hf, to_hf, QwenMoEStateDictAdapter, build)
