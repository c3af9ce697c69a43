"""Qwen MoE families (Qwen2-MoE with a gated shared expert, Qwen3-MoE with q/k norm): config, model, adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen_moe.config`` (the torch-free config
translator) does not import the model.
"""

from codekiln.workloads.model.family import lazy_spec

__getattr__ = lazy_spec(__name__, "qwen_moe", {"Qwen2MoeForCausalLM": "qwen2_moe", "Qwen3MoeForCausalLM": "qwen3_moe"},
                        "QwenMoEStateDictAdapter")
