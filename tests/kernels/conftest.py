"""Kernel tests: Triton interpreter on CPU (fp32), real kernels on CUDA when present.

``TRITON_INTERPRET`` must be set before ``triton.jit`` decorates the kernels, i.e.
before ``codekiln.kernels`` is first imported; this conftest runs at collection time.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def device() -> torch.device:
    """Where fp32 correctness tests run: CPU under the interpreter, else the GPU."""
    return torch.device("cuda" if HAS_CUDA else "cpu")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
