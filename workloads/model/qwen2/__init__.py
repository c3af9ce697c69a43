"""Qwen2 family: config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen2.config`` (the torch-free config
translator) does not import the model.
"""

from codekiln.workloads.model.family import lazy_spec

__getattr__ = lazy_spec(__name__, "qwen2", {"Qwen2ForCausalLM": "qwen2"}, "Qwen2StateDictAdapter")
