"""Llama family (Llama 2/3/3.1/3.2, DeepSeek-Coder, Seed-Coder): config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``llama.config`` (the torch-free config
translator) does not import the model.
"""


def __getattr__(name: str):
    if name != "SPEC":
        raise AttributeError(name)
    from codekiln.workloads.model.family import FamilySpec
    from codekiln.workloads.model.llama.config import from_hf, to_hf
    from codekiln.workloads.model.llama.model import build
    from codekiln.workloads.model.llama.state_dict_adapter import LlamaStateDictAdapter

    spec = FamilySpec("llama", {"LlamaForCausalLM": "llama"}, from_hf, to_hf, LlamaStateDictAdapter, build)
    globals()["SPEC"] = spec
    return spec
