"""GPU (bf16): the grouped-matmul MoE equals the per-expert loop, and a Qwen3-MoE / Qwen2 load from
transformers folders gives transformers' logits on the GPU (bf16 tolerance)."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.model import moe as moe_mod
from codekiln.workloads.model.config import ModelConfig, MoEConfig
from codekiln.workloads.model.transformer import Transformer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_grouped_mm_moe_equals_expert_loop_in_bf16(monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(family="qwen3_moe", dim=256, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=1024,
                      moe=MoEConfig(num_experts=8, top_k=2, expert_ffn_dim=128, norm_topk_prob=True))
    layer = Transformer(cfg).cuda().layers[0].mlp
    x = torch.randn(4, 256, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast = layer(x)
        (g_fast,) = torch.autograd.grad(fast.float().square().sum(), x)
        monkeypatch.setattr(moe_mod, "_GROUPED_MM", False)  # the per-expert matmul fallback
        slow = layer(x)
        (g_slow,) = torch.autograd.grad(slow.float().square().sum(), x)
    torch.testing.assert_close(fast.float(), slow.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(g_fast.float(), g_slow.float(), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("kind", ["Qwen2Config", "Qwen3MoeConfig"])
def test_transformers_folder_on_gpu_bf16(kind, tmp_path):
    transformers = pytest.importorskip("transformers")
    from codekiln.workloads.model.hf import load_hf

    extra = {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64} if "Moe" in kind else {}
    cfg = getattr(transformers, kind)(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, **extra)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).cuda().eval()
    ours, _ = load_hf(tmp_path, dtype=torch.bfloat16)
    ours = ours.cuda().eval()
    ids = torch.randint(0, 512, (2, 300), device="cuda")
    with torch.no_grad():
        a, b = ours(ids).float(), theirs(ids).logits.float()
    assert (a - b).abs().max() < 0.05 * max(1.0, b.abs().max().item())
