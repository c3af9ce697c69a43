"""kernels="torch" vs kernels="triton": the tiny model trains to the same losses (CPU, interpreter).

Pretraining: packed documents (positions restart), ignored labels, fused linear CE.
RL: trie-packed rollouts (depth position ids, tree mask) through the RL engineer's
``response_logprobs_packed`` (fused log-prob + entropy), a PPO-clip loss and an
entropy bonus.
"""

import pytest
import torch

from codekiln.workloads.model import ops
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.rl.logprobs import response_logprobs_packed
from codekiln.workloads.rl.losses import ppo_clip_loss

STEPS = 3


def _models(**cfg) -> dict[str, Transformer]:
    torch.manual_seed(0)
    models = {"torch": Transformer(ModelConfig(preset="tiny", kernels="torch", **cfg))}
    models["triton"] = Transformer(ModelConfig(preset="tiny", kernels="triton", **cfg))
    models["triton"].load_state_dict(models["torch"].state_dict())
    return models


def _train(model: Transformer, loss_fn) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of STEPS AdamW steps and the first step's gradients."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    losses, first_grads = [], {}
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(model, step)
        loss.backward()
        if step == 0:
            first_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses, first_grads


def _pretrain_loss(model: Transformer, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    b, t, vocab = 2, 48, model.cfg.vocab_size
    ids = torch.randint(0, vocab, (b, t + 1), generator=gen)
    doc_ids = torch.tensor([0] * 20 + [1] * 28).expand(b, t)
    positions = torch.cat([torch.arange(20), torch.arange(28)]).expand(b, t)
    labels = ids[:, 1:].clone()
    labels[:, 19] = -100  # no prediction across the document boundary
    hidden = model.hidden_states(ids[:, :-1], position_ids=positions, document_ids=doc_ids)
    return ops.linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]), model.lm_head.weight, labels.reshape(-1),
        ignore_index=-100, reduction="mean", kernels=model.cfg.kernels,
    )


def _rl_loss(model: Transformer, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + step)
    prompt = torch.randint(0, 512, (6,), generator=gen).tolist()
    prompts = [prompt, prompt, prompt, prompt[:3]]  # shared prefixes: a real trie
    responses = [torch.randint(0, 512, (n,), generator=gen).tolist() for n in (5, 7, 4, 6)]
    responses[1][:2] = responses[0][:2]
    logp, entropy = response_logprobs_packed(model, prompts, responses, temperature=0.8)
    mask = torch.zeros_like(logp, dtype=torch.bool)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = True
    advantages = torch.tensor([1.0, -0.5, 0.25, -0.75])
    per_token = ppo_clip_loss(logp, logp.detach() - 0.05, advantages) - 0.01 * entropy
    return (per_token * mask).sum() / mask.sum()


@pytest.mark.parametrize(
    ("loss_fn", "checkpointing"),
    [(_pretrain_loss, False), (_pretrain_loss, True), (_rl_loss, False)],
    ids=["pretrain", "pretrain-activation-checkpointing", "rl-trie-packed"],
)
def test_tiny_model_same_losses_with_triton_kernels(loss_fn, checkpointing):
    models = _models(activation_checkpointing=checkpointing)
    runs = {name: _train(model, loss_fn) for name, model in models.items()}
    (losses, grads), (losses_ref, grads_ref) = runs["triton"], runs["torch"]
    assert len(set(losses_ref)) == STEPS  # training moved the loss
    torch.testing.assert_close(losses, losses_ref, atol=1e-5, rtol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name, g in grads.items():  # every parameter's gradient, incl. norms, lm-head, embeddings
        torch.testing.assert_close(g, grads_ref[name], atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def _graph_nodes(tensor: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return names


def test_triton_switch_routes_every_op_through_the_kernels():
    model = _models()["triton"]
    loss = _pretrain_loss(model, 0)
    names = _graph_nodes(loss)
    for fn in ("RMSNormFunction", "RoPEFunction", "SwiGLUFunction", "LinearCrossEntropyFunction"):
        assert f"{fn}Backward" in names, sorted(names)
    logp, _ = response_logprobs_packed(model, [[1, 2, 3]], [[4, 5]])
    assert "TokenLogprobsEntropyFunctionBackward" in _graph_nodes(logp)
    assert not any("Function" in n for n in _graph_nodes(_pretrain_loss(_models()["torch"], 0)))
