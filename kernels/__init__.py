"""Triton kernels, each with a torch reference and an autograd wrapper.

Public ops (all differentiable, fp32 statistics, any float dtype on GPU, fp32 under the
Triton interpreter on CPU):

- :func:`rms_norm`, :func:`apply_rope`, :func:`swiglu`
- :func:`linear_cross_entropy` — fused lm-head + cross-entropy, chunked over tokens and
  tiled over the vocabulary; never materialises the full ``[N, V]`` logits.
- :func:`token_logprobs_entropy` — fused selected-token log-prob + entropy (RL hot path).

Pure-torch references of the same ops live in :mod:`codekiln.kernels.reference`.

Without a CUDA device, the first use of a kernel turns on the Triton interpreter
(``TRITON_INTERPRET=1``) unless the variable is already set, so the kernels run on CPU
tensors. This package imports nothing else of codekiln.
"""

import importlib
from typing import Any

# Public name -> defining module. Loaded on first use, so importing the package (or its
# pure-torch ``reference`` module) never imports Triton or flips the interpreter switch.
_EXPORTS = {
    "interpreting": "codekiln.kernels._runtime",
    "linear_cross_entropy": "codekiln.kernels.linear_cross_entropy",
    "token_logprobs_entropy": "codekiln.kernels.logprobs_entropy",
    "rms_norm": "codekiln.kernels.rms_norm",
    "apply_rope": "codekiln.kernels.rope",
    "swiglu": "codekiln.kernels.swiglu",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codekiln.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
