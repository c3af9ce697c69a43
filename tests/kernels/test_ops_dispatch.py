"""codekiln.workloads.model.ops: the "triton" branch equals the "torch" branch through the same signatures."""

import pytest
import torch

from codekiln.workloads.model import ops


def _both(fn, *args, **kwargs):
    return fn(*args, **kwargs, kernels="torch"), fn(*args, **kwargs, kernels="triton")


def test_ops_triton_branch_matches_torch_branch(device):
    x, w = torch.randn(3, 5, 16, device=device), torch.rand(16, device=device)
    torch.testing.assert_close(*_both(ops.rms_norm, x, w, 1e-5), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(*_both(ops.swiglu, x, x.flip(-1)), atol=1e-5, rtol=1e-5)
    # ops.apply_rope takes cos/sin as every family builds them: two equal halves (cat(freqs, freqs))
    cos, sin = (torch.rand(3, 5, 8, device=device).repeat(1, 1, 2) for _ in range(2))
    q = torch.randn(3, 2, 5, 16, device=device)
    torch.testing.assert_close(*_both(ops.apply_rope, q, cos, sin), atol=1e-5, rtol=1e-5)
    h, lm = torch.randn(15, 16, device=device), torch.randn(101, 16, device=device)
    labels = torch.randint(0, 101, (15,), device=device)
    for reduction in ("mean", "sum"):
        a, b = _both(ops.linear_cross_entropy, h, lm, labels, ignore_index=3, reduction=reduction)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    h3, labels2 = h.view(3, 5, 16), labels.view(3, 5)
    (lp, ent), (lp_t, ent_t) = _both(ops.token_logprobs_entropy, h3, lm, labels2, temperature=0.7)
    assert lp_t.shape == lp.shape == (15,)
    torch.testing.assert_close(lp_t, lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_t, ent, atol=1e-5, rtol=1e-5)


def test_unknown_kernels_name_is_a_clear_error():
    with pytest.raises(ValueError, match="kernels must be one of"):
        ops.swiglu(torch.ones(2), torch.ones(2), kernels="cuda")
