import pytest
import torch

from codekiln.kernels import reference, token_logprobs_entropy

from .helpers import grads, leaf

N, D, V = 150, 24, 5003


@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("chunk_size", [64, None])
def test_logprobs_entropy_matches_reference(temperature, chunk_size, device):
    hidden, weight = leaf(N, D, device=device), leaf(V, D, device=device, scale=0.3)
    labels = torch.randint(0, V, (N,), device=device)
    labels[0] = V - 1
    out = token_logprobs_entropy(hidden, weight, labels, temperature=temperature, chunk_size=chunk_size)
    out_ref = reference.token_logprobs_entropy(hidden, weight, labels, temperature)
    for a, b in zip(out, out_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # gradients through both outputs at once, with arbitrary per-token upstream gradients
    for a, b in zip(grads(out, (hidden, weight)), grads(out_ref, (hidden, weight)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("which", [0, 1])
def test_logprobs_entropy_single_output_gradient(which, device):
    """An RL loss may use only the log-probs (or only the entropy): the other grad is None."""
    hidden, weight = leaf(2, 33, D, device=device), leaf(V, D, device=device, scale=0.3)
    labels = torch.randint(0, V, (2, 33), device=device)
    out = token_logprobs_entropy(hidden, weight, labels, chunk_size=50)
    out_ref = reference.token_logprobs_entropy(hidden, weight, labels)
    assert out[which].shape == (66,)
    g = torch.autograd.grad(out[which].mean(), (hidden, weight))
    g_ref = torch.autograd.grad(out_ref[which].mean(), (hidden, weight))
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_logprobs_entropy_bad_input(device):
    hidden, weight = torch.randn(3, D, device=device), torch.randn(V, D, device=device)
    with pytest.raises(ValueError, match="labels must lie in"):
        token_logprobs_entropy(hidden, weight, torch.tensor([0, -100, 1], device=device))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs_entropy(hidden, weight, torch.zeros(3, dtype=torch.long, device=device), temperature=0.0)
