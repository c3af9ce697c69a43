"""The interpreter works on CPU even when something imported triton before codekiln.kernels."""

import os
import subprocess
import sys

SCRIPT = """
import triton  # imported first, without TRITON_INTERPRET (as another library might)
import torch
import codekiln.kernels as K
from codekiln.kernels import reference as R
assert K.interpreting()
x = torch.randn(5, 6, requires_grad=True)
w = torch.randn(11, 6)
labels = torch.randint(0, 11, (5,))
torch.testing.assert_close(K.rms_norm(x, torch.ones(6), 1e-5), R.rms_norm(x, torch.ones(6), 1e-5))
torch.testing.assert_close(K.linear_cross_entropy(x, w, labels), R.linear_cross_entropy(x, w, labels))
print("ok")
"""


def test_kernels_run_when_triton_was_imported_first():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU situation, also on a GPU machine
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
