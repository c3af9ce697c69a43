import pytest
import torch

from codekiln.kernels import reference, rms_norm

from .helpers import grads, leaf


@pytest.mark.parametrize("shape", [(1500, 45), (3, 7, 128), (1, 1, 3)])
def test_rms_norm_matches_reference(shape, device):
    x = leaf(*shape, device=device, scale=3.0)
    w = (torch.rand(shape[-1]) + 0.5).to(device).requires_grad_()
    y, y_ref = rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads(y, (x, w)), grads(y_ref, (x, w)), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-5)


def test_rms_norm_rejects_wrong_weight(device):
    x = torch.randn(4, 8, device=device)
    with pytest.raises(ValueError, match="weight shape"):
        rms_norm(x, torch.ones(7, device=device), 1e-5)
