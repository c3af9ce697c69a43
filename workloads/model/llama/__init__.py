"""Llama family (Llama 2/3/3.1/3.2, DeepSeek-Coder, Seed-Coder): config, model, state-dict adapter.

The family's ``SPEC`` is built on first use, so that importing ``llama.config`` (the torch-free config
translator) does not import the model.
"""

from codekiln.workloads.model.family import lazy_spec

__getattr__ = lazy_spec(__name__, "llama", {"LlamaForCausalLM": "llama"}, "LlamaStateDictAdapter")
