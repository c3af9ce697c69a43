import pytest
import torch

from codekiln.kernels import linear_cross_entropy, reference

from .helpers import leaf

N, D, V = 150, 24, 5003  # vocab not a power of two, spans 3 interpreter tiles; rows not a multiple of 64


def _labels(device, ignore_every: int = 7) -> torch.Tensor:
    labels = torch.randint(0, V, (N,))
    labels[::ignore_every] = -100
    labels[1] = V - 1  # the last vocabulary column (in the masked tail tile)
    return labels.to(device)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_size", [64, None])  # 64: three chunks, the last one partial
def test_linear_ce_matches_reference(reduction, chunk_size, device):
    hidden, weight = leaf(N, D, device=device), leaf(V, D, device=device, scale=0.3)
    labels = _labels(device)
    loss = linear_cross_entropy(hidden, weight, labels, reduction=reduction, chunk_size=chunk_size)
    loss_ref = reference.linear_cross_entropy(hidden, weight, labels, reduction=reduction)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-6)
    g = torch.autograd.grad(loss * 1.7, (hidden, weight))  # non-unit upstream gradient
    g_ref = torch.autograd.grad(loss_ref * 1.7, (hidden, weight))
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_linear_ce_batched_input_and_custom_ignore_index(device):
    hidden = leaf(3, 50, D, device=device)
    weight = leaf(V, D, device=device, scale=0.3)
    labels = torch.randint(0, V, (3, 50), device=device)
    labels[:, -5:] = 7  # ignore_index is a real token id here
    loss = linear_cross_entropy(hidden, weight, labels, ignore_index=7, chunk_size=40)
    loss_ref = reference.linear_cross_entropy(hidden, weight, labels, ignore_index=7)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-6)
    (gh,), (gh_ref,) = torch.autograd.grad(loss, (hidden,)), torch.autograd.grad(loss_ref, (hidden,))
    assert gh.shape == hidden.shape
    torch.testing.assert_close(gh, gh_ref, atol=1e-6, rtol=1e-5)
    assert gh[:, -5:].abs().max() == 0  # ignored rows get no gradient


def test_linear_ce_without_grad_and_weight_only_grad(device):
    hidden, weight = torch.randn(N, D, device=device), leaf(V, D, device=device, scale=0.3)
    labels = _labels(device)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, labels)
    torch.testing.assert_close(loss, reference.linear_cross_entropy(hidden, weight, labels), atol=1e-6, rtol=1e-6)
    (gw,) = torch.autograd.grad(linear_cross_entropy(hidden, weight, labels, reduction="sum"), (weight,))
    (gw_ref,) = torch.autograd.grad(reference.linear_cross_entropy(hidden, weight, labels, reduction="sum"), (weight,))
    torch.testing.assert_close(gw, gw_ref, atol=1e-5, rtol=1e-5)


def test_linear_ce_bad_input_is_a_clear_error(device):
    hidden, weight = torch.randn(4, D, device=device), torch.randn(V, D, device=device)
    with pytest.raises(ValueError, match="labels must lie in"):
        linear_cross_entropy(hidden, weight, torch.tensor([0, 1, V, 2], device=device))
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(hidden, weight, torch.zeros(4, dtype=torch.long, device=device), reduction="avg")
    with pytest.raises(ValueError, match="does not match weight"):
        linear_cross_entropy(hidden[:, :5], weight, torch.zeros(4, dtype=torch.long, device=device))


@pytest.mark.parametrize("chunk_size", [64, None])
def test_linear_ce_per_token_losses_and_weighted_gradients(chunk_size, device):
    # reduction="none": per-token losses (0 where ignored); backward recomputes each chunk with a
    # different upstream gradient per token, e.g. RL advantages or loss masks
    hidden, weight = leaf(3, 50, D, device=device), leaf(V, D, device=device, scale=0.3)
    labels = torch.randint(0, V, (3, 50), device=device)
    labels[:, ::9] = -100
    loss = linear_cross_entropy(hidden, weight, labels, reduction="none", chunk_size=chunk_size)
    loss_ref = reference.linear_cross_entropy(hidden, weight, labels, reduction="none").view(3, 50)
    assert loss.shape == labels.shape and bool((loss[:, ::9] == 0).all())
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-6)
    weights = torch.randn(3, 50, device=device)  # signed, per token
    g = torch.autograd.grad((loss * weights).sum(), (hidden, weight))
    g_ref = torch.autograd.grad((loss_ref * weights).sum(), (hidden, weight))
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
