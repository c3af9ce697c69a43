"""Triton kernels, each with a torch reference and an autograd wrapper.

Public ops (all differentiable, fp32 statistics, any float dtype on GPU, fp32 under the
Triton interpreter on CPU):

- :func:`rms_norm`, :func:`apply_rope`, :func:`swiglu`
- :func:`linear_cross_entropy` — fused lm-head + cross-entropy, chunked over tokens and
  tiled over the vocabulary; never materialises the full ``[N, V]`` logits.
- :func:`token_logprobs_entropy` — fused selected-token log-prob + entropy (RL hot path).

Pure-torch references of the same ops live in :mod:`codekiln.kernels.reference`.

Without a CUDA device, importing this package turns on the Triton interpreter
(``TRITON_INTERPRET=1``) unless the variable is already set, so the kernels run on CPU
tensors. This package imports nothing else of codekiln.
"""

from codekiln.kernels._runtime import interpreting
from codekiln.kernels.linear_cross_entropy import linear_cross_entropy
from codekiln.kernels.logprobs_entropy import token_logprobs_entropy
from codekiln.kernels.rms_norm import rms_norm
from codekiln.kernels.rope import apply_rope
from codekiln.kernels.swiglu import swiglu

__all__ = [
    "apply_rope",
    "interpreting",
    "linear_cross_entropy",
    "rms_norm",
    "swiglu",
    "token_logprobs_entropy",
]
