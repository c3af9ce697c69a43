"""Qwen3 family: config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``qwen3.config`` (the torch-free config
translator) does not import the model.
"""

from codekiln.workloads.model.family import lazy_spec

__getattr__ = lazy_spec(__name__, "qwen3", {"Qwen3ForCausalLM": "qwen3"}, "Qwen3StateDictAdapter")
