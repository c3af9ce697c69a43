import pytest
import torch

from codekiln.kernels import apply_rope, reference
from codekiln.workloads.model.config import ModelConfig, RopeScalingConfig
from codekiln.workloads.model.transformer import rope_inv_freq

from .helpers import grads


def _packed_positions(b: int, t: int) -> torch.Tensor:
    """Positions that restart inside a row (packed documents) and repeat (trie depths)."""
    pos = torch.cat([torch.arange(300), torch.arange(t - 300 - 50), torch.arange(40, 65).repeat(2)])[:t]
    return torch.stack([pos, torch.arange(1000, 1000 + t)][:b])


@pytest.mark.parametrize("scaled", [False, True])
def test_rope_matches_reference_on_strided_heads(scaled, device):
    b, t, h, d = 2, 701, 3, 24  # 4206 rows: not a multiple of the block
    scaling = RopeScalingConfig(factor=8.0, original_max_position_embeddings=64) if scaled else None
    inv_freq = rope_inv_freq(ModelConfig(dim=h * d, n_heads=h, n_kv_heads=h, rope_scaling=scaling)).float()
    cos, sin = reference.rope_cos_sin(_packed_positions(b, t), inv_freq)
    cos, sin = cos.to(device), sin.to(device)
    # the model's layout: [B, T, H, D] projected, then transposed to a strided [B, H, T, D] view
    x = torch.randn(b, t, h, d, device=device).transpose(1, 2).detach().requires_grad_()
    y, y_ref = apply_rope(x, cos, sin), reference.apply_rope(x, cos, sin)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    (g,), (g_ref,) = grads(y, (x,)), grads(y_ref, (x,))
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


def test_rope_broadcast_cos_sin_and_bad_shapes(device):
    x = torch.randn(3, 2, 5, 8, device=device)
    cos, sin = reference.rope_cos_sin(torch.arange(5)[None], 1.0 / (100 ** (torch.arange(0, 8, 2) / 8)))
    cos, sin = cos.to(device), sin.to(device)
    torch.testing.assert_close(apply_rope(x, cos, sin), reference.apply_rope(x, cos, sin), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="cos must be"):
        apply_rope(x, cos[:, :4], sin)
    with pytest.raises(ValueError, match="even D"):
        apply_rope(x[..., :7], cos, sin)
