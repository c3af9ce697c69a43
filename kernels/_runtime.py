"""Interpreter switch and launch-size helpers shared by the kernels.

Imported first by every kernel module: without CUDA it sets ``TRITON_INTERPRET=1``
before ``triton`` is imported, because ``triton.jit`` decides at decoration time whether
a kernel (and Triton's own ``tl.sum``/``tl.max`` helpers) is compiled or interpreted.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch

_TRITON_PREIMPORTED = "triton" in sys.modules
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402


def _rejit_triton_stdlib() -> None:
    """Re-decorate Triton's own ``@jit`` helpers (``tl.sum``, ``tl.max``, ...) for the interpreter.

    If something imported ``triton`` before ``TRITON_INTERPRET`` was set, those helpers
    are compiled-mode functions and every interpreted kernel calling them fails; reloading
    the modules that define them (now in interpreter mode) and rebinding the names that
    ``triton.language`` re-exports fixes that.
    """
    for name in ("triton.language.standard", "triton.language.math", "triton.language.random"):
        module = sys.modules.get(name)
        if module is None:
            continue
        old = dict(vars(module))
        importlib.reload(module)
        for attr, obj in old.items():
            new = getattr(module, attr, None)
            if new is not obj and getattr(tl, attr, None) is obj:
                setattr(tl, attr, new)


if _TRITON_PREIMPORTED and triton.knobs.runtime.interpret and not isinstance(tl.sum, InterpretedFunction):
    _rejit_triton_stdlib()


def interpreting() -> bool:
    """True when kernels run under the Triton interpreter (CPU tensors)."""
    return bool(triton.knobs.runtime.interpret)


def row_block(n_cols: int, *, gpu_elems: int = 4096, cpu_elems: int = 1 << 16) -> tuple[int, int]:
    """(BLOCK_ROWS, BLOCK_COLS) for a row-wise kernel whose row fits one tile.

    On GPU a program owns a few rows (register budget ~``gpu_elems``); under the
    interpreter each program is run sequentially in Python, so programs take many rows
    and let numpy do the work.
    """
    block_cols = triton.next_power_of_2(n_cols)
    budget = cpu_elems if interpreting() else gpu_elems
    return max(1, budget // block_cols), block_cols


def vocab_block(vocab: int) -> tuple[int, int]:
    """(BLOCK_ROWS, BLOCK_V) for the kernels that stream over vocabulary tiles."""
    if interpreting():
        return 64, min(triton.next_power_of_2(vocab), 2048)
    return 1, min(triton.next_power_of_2(vocab), 4096)


def num_warps(tile_elems: int) -> int:
    """Warps for a program whose largest tile has ``tile_elems`` elements (ignored by the interpreter)."""
    if tile_elems >= 32768:
        return 32
    if tile_elems >= 8192:
        return 16
    return 8 if tile_elems >= 2048 else 4


def check_device(*tensors: torch.Tensor) -> None:
    """Raise a clear error when a tensor cannot run on this Triton backend."""
    for t in tensors:
        if interpreting():
            if t.device.type != "cpu":
                raise ValueError(f"Triton interpreter needs CPU tensors, got one on {t.device}")
            if t.dtype == torch.bfloat16:  # the interpreter computes in numpy, which has no bf16
                raise ValueError("the Triton interpreter does not support bfloat16; use float32 on CPU")
        elif t.device.type != "cuda":
            raise ValueError(f"Triton kernels need CUDA tensors, got one on {t.device}")
