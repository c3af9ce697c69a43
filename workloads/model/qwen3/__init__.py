"""Qwen3 family: config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen3.config`` (the torch-free config
translator) does not import the model.
"""


def __getattr__(name: str):
    if name != "SPEC":
        raise AttributeError(name)
    from codekiln.workloads.model.family import FamilySpec
    from codekiln.workloads.model.qwen3.config import from_hf, to_hf
    from codekiln.workloads.model.qwen3.model import build
    from codekiln.workloads.model.qwen3.state_dict_adapter import Qwen3StateDictAdapter

    spec = FamilySpec("qwen3", {"Qwen3ForCausalLM": "qwen3"}, from_hf, to_hf, Qwen3StateDictAdapter, build)
    globals()["SPEC"] = spec
    return spec
