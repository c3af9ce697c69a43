"""Qwen MoE families (Qwen2-MoE with a gated shared expert, Qwen3-MoE with q/k norm): config, model, adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen_moe.config`` (the torch-free config
translator) does not import the model.
"""


def __getattr__(name: str):
    if name != "SPEC":
        raise AttributeError(name)
    from codekiln.workloads.model.family import FamilySpec
    from codekiln.workloads.model.qwen_moe.config import from_hf, to_hf
    from codekiln.workloads.model.qwen_moe.model import build
    from codekiln.workloads.model.qwen_moe.state_dict_adapter import QwenMoEStateDictAdapter

    spec = FamilySpec("qwen_moe", {"Qwen2MoeForCausalLM": "qwen2_moe", "Qwen3MoeForCausalLM": "qwen3_moe"},
                      from_hf, to_hf, QwenMoEStateDictAdapter, build)
    globals()["SPEC"] = spec
    return spec
