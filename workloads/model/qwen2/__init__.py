"""Qwen2 family: config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen2.config`` (the torch-free config
translator) does not import the model.
"""


def __getattr__(name: str):
    if name != "SPEC":
        raise AttributeError(name)
    from codekiln.workloads.model.family import FamilySpec
    from codekiln.workloads.model.qwen2.config import from_hf, to_hf
    from codekiln.workloads.model.qwen2.model import build
    from codekiln.workloads.model.qwen2.state_dict_adapter import Qwen2StateDictAdapter

    spec = FamilySpec("qwen2", {"Qwen2ForCausalLM": "qwen2"}, from_hf, to_hf, Qwen2StateDictAdapter, build)
    globals()["SPEC"] = spec
    return spec
