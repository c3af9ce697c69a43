"""The torch path's fused training ops against their references: blocked causal attention vs SDPA,
RoPE without the rotated copy, the q/k/v split with RoPE, SwiGLU, RMSNorm, the in-place chunked
linear cross-entropy, and a whole training step's loss and gradients against transformers' LlamaForCausalLM
(float64 model, fp32 loss)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codekiln.kernels import reference
from codekiln.workloads.model import fused
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.train.loss import token_ce_sum


def assert_same_with_gradients(out, ref, inputs, upstream, atol: float) -> None:
    """``out`` equals ``ref`` within ``atol``, and so do their gradients w.r.t. ``inputs`` for ``upstream``."""
    for a, b in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    got, want = torch.autograd.grad(out, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=f"gradient of input {i}")


@pytest.mark.parametrize(("heads", "kv_heads", "t", "block"), [(4, 4, 130, 64), (8, 2, 100, 37), (6, 3, 64, 64)])
def test_blocked_causal_attention_equals_sdpa_values_and_gradients(heads, kv_heads, t, block):
    torch.manual_seed(0)
    q = torch.randn(2, heads, t, 16, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, kv_heads, t, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, kv_heads, t, 16, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, heads, t, 16, dtype=torch.float64)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=heads != kv_heads)
    out = fused.causal_attention(q, k, v, block)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    for a, b, name in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g), "qkv",
                          strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=f"d{name}")


def test_blocked_attention_is_chosen_only_for_cpu_training_within_the_memory_budget():
    q, k = torch.zeros(2, 4, 128, 16, requires_grad=True), torch.zeros(2, 2, 128, 16)
    assert fused.use_causal_attention(q, k)
    with torch.no_grad():  # inference: SDPA (nothing to keep for backward)
        assert not fused.use_causal_attention(q, k)
    assert not fused.use_causal_attention(q.detach(), k)
    assert not fused.use_causal_attention(q.bfloat16(), k.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast would mix dtypes inside: SDPA
        assert not fused.use_causal_attention(q, k)
    long = torch.zeros(4, 32, 4096, 16, requires_grad=True)  # ~1 GiB of probabilities: SDPA's flash kernel
    assert not fused.use_causal_attention(long, long)


def test_rope_without_rotated_copy_equals_reference_values_and_gradients():
    torch.manual_seed(0)
    qkv = torch.randn(2, 50, 6, 32, dtype=torch.float64, requires_grad=True)  # [B, T, heads, D] as projected
    pos = torch.arange(50).expand(2, 50)
    freqs = pos[..., None].double() / 10000 ** (torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    emb = torch.cat((freqs, freqs), dim=-1)
    x = qkv[:, :, :4].transpose(1, 2)
    out, ref = fused.apply_rope(x, emb.cos(), emb.sin()), reference.apply_rope(x, emb.cos(), emb.sin())
    assert out.is_contiguous()
    assert_same_with_gradients(out, ref, qkv, torch.randn_like(ref), 1e-13)


def test_qkv_split_with_rope_and_swiglu_equal_references_with_gradients():
    torch.manual_seed(0)
    qkv = torch.randn(2, 50, 8, 16, dtype=torch.float64, requires_grad=True)  # 4 q heads, 2 k, 2 v
    freqs = torch.arange(50)[:, None].double() / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    emb = torch.cat((freqs, freqs), dim=-1).expand(2, 50, 16)
    cos, sin = emb.cos(), emb.sin()
    got = fused.qkv_rope(qkv, cos, sin, 4, 2)
    want = (reference.apply_rope(qkv[:, :, :4].transpose(1, 2), cos, sin),
            reference.apply_rope(qkv[:, :, 4:6].transpose(1, 2), cos, sin), qkv[:, :, 6:].transpose(1, 2))
    assert_same_with_gradients(tuple(got), want, qkv, [torch.randn_like(w) for w in want], 1e-13)

    gate_up = torch.randn(3, 7, 20, dtype=torch.float64, requires_grad=True)
    out, ref = fused.swiglu(gate_up), F.silu(gate_up[..., :10]) * gate_up[..., 10:]
    assert_same_with_gradients(out, ref, gate_up, torch.randn_like(ref), 1e-13)


def test_rms_norm_equals_reference_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 24, dtype=torch.float64, requires_grad=True)
    w = torch.randn(24, dtype=torch.float64, requires_grad=True)
    out, ref = fused.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6)
    torch.testing.assert_close(out, ref, atol=0, rtol=0)  # the same roundings as the reference
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=0)


def test_chunked_linear_cross_entropy_equals_reference(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 7 * 50)  # 7 rows per chunk: several chunks, a ragged last one
    hidden = torch.randn(40, 12, dtype=torch.float64, requires_grad=True)
    weight = (torch.randn(50, 12, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, 50, (40,))
    labels[[0, 8, 9, 39]] = -100  # ignored rows, one of them the first of a chunk
    for reduction in ("sum", "mean"):  # both compute the logits in fp32 (the loss is fp32 by design)
        out = fused.linear_cross_entropy(hidden, weight, labels, reduction=reduction)
        ref = reference.linear_cross_entropy(hidden, weight, labels, reduction=reduction)
        torch.testing.assert_close(out, ref.to(out.dtype), atol=1e-5, rtol=1e-6)
        got, want = torch.autograd.grad(out, (hidden, weight)), torch.autograd.grad(ref, (hidden, weight))
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert got[0][[0, 8, 9, 39]].abs().max() == 0


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_training_step_loss_and_gradients_equal_transformers(tmp_path, family):
    """Loss and every parameter's gradient of one training step (fused CE, blocked attention, RoPE without
    copies, SwiGLU, RMSNorm; Qwen3: q/k norms) against transformers' *ForCausalLM with the same weights, in
    float64 (the loss's logits in fp32, as the fused loss computes them)."""
    transformers = pytest.importorskip("transformers")
    from codekiln.workloads.model.hf import export_hf

    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", family=family, max_seq_len=160)
    ours = Transformer(cfg)
    ours.reset_parameters(std=0.2)  # large logits: a wrong attention or loss shows
    export_hf(ours, cfg, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                               attn_implementation="sdpa")
    ours, theirs = ours.double().train(), theirs.double().train()
    ids = torch.randint(0, cfg.vocab_size, (2, 150))  # 150 positions: three attention blocks, the last ragged
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    probe = torch.zeros(2, cfg.n_heads, 150, cfg.head_dim, dtype=torch.float64, requires_grad=True)
    assert fused.use_causal_attention(probe, probe)  # the blocked path is the one under test
    loss = token_ce_sum(ours, {"input_ids": ids, "labels": labels}) / (labels != -100).sum()
    loss_hf = theirs(input_ids=ids, labels=ids).loss
    assert loss.item() > 1.0
    torch.testing.assert_close(loss, loss_hf, atol=0, rtol=1e-6)  # both compute the loss in fp32
    loss.backward()
    loss_hf.backward()
    grads = {name.removeprefix("model."): p.grad for name, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_activation_checkpointing_recomputes_the_blocked_attention_exactly():
    torch.manual_seed(0)
    plain = Transformer(ModelConfig(preset="tiny", max_seq_len=128))
    ckpt = Transformer(ModelConfig(preset="tiny", max_seq_len=128, activation_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 512, (2, 100))  # no document mask: the blocked causal attention runs
    for model in (plain, ckpt):
        model.train()
        model(ids).logsumexp(-1).mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert p.grad.abs().max() > 0, name
        torch.testing.assert_close(q.grad, p.grad, atol=0, rtol=0, msg=name)
