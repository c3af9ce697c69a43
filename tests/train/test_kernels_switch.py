"""The training loss goes through ops: ``model.kernels: triton`` gives the torch loss and gradients.

Runs in a subprocess because Triton's CPU interpreter must be chosen (TRITON_INTERPRET=1)
before triton is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, torch
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.train.loss import token_ce_sum
torch.manual_seed(0)
ref, fused = Transformer(ModelConfig(preset="tiny")), Transformer(ModelConfig(preset="tiny", kernels="triton"))
fused.load_state_dict(ref.state_dict())
ids = torch.randint(0, 512, (2, 16))
labels = ids.roll(-1, 1)
labels[:, -1] = -100
labels[0, 3:7] = -100
batch = {"input_ids": ids, "labels": labels, "document_ids": torch.tensor([[0] * 5 + [1] * 11] * 2)}
a, b = token_ce_sum(ref, batch), token_ce_sum(fused, batch)
a.backward()
b.backward()
diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(ref.parameters(), fused.parameters()))
print(json.dumps({"torch": a.item(), "triton": b.item(), "grad_diff": diff}))
"""


def test_triton_kernels_switch_matches_torch_in_the_training_loss():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["triton"] == pytest.approx(out["torch"], rel=1e-5)
    assert out["grad_diff"] < 1e-5
