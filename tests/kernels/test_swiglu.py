import pytest
import torch

from codekiln.kernels import reference, swiglu

from .helpers import grads, leaf


@pytest.mark.parametrize("shape", [(5, 301, 211), (7,)])  # 317,555 elements: two interpreter blocks, tail masked
def test_swiglu_matches_reference(shape, device):
    gate, up = leaf(*shape, device=device, scale=3.0), leaf(*shape, device=device)
    y, y_ref = swiglu(gate, up), reference.swiglu(gate, up)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads(y, (gate, up)), grads(y_ref, (gate, up)), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


def test_swiglu_rejects_shape_mismatch(device):
    with pytest.raises(ValueError, match="differ in shape"):
        swiglu(torch.randn(3, 4, device=device), torch.randn(3, 5, device=device))
