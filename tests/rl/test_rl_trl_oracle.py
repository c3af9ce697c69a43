"""Our GRPO/DAPO and DPO losses against TRL's own code on identical tensors (TRL is the oracle).

TRL computes these losses only inside ``GRPOTrainer._compute_loss`` / ``DPOTrainer._compute_loss``.
Building a full trainer needs a Hugging Face model, tokenizer, dataset and accelerate state,
so we create the trainer object without ``__init__`` (``cls.__new__``), set only the attributes
``_compute_loss`` reads, feed it our tensors through its model hooks (``_get_per_token_logps_and_entropies``
for GRPO, a model callable returning ``log_probs`` for DPO) and call TRL's real method. Metric
logging goes through a pass-through accelerator stub; the loss arithmetic is TRL's own code.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from codekiln.workloads.rl.losses import aggregate, dpo_sigmoid_loss, loss_normalizer, ppo_clip_loss

trl = pytest.importorskip("trl", reason="trl is the oracle for these tests (installed with the dev extra)")
from trl import DPOTrainer  # noqa: E402
from trl_grpo_oracle import Accelerator as _Accelerator  # noqa: E402
from trl_grpo_oracle import trl_grpo_loss as _trl_grpo_loss  # noqa: E402


def _rollouts(seed: int):
    g = torch.Generator().manual_seed(seed)
    b, t = 6, 9
    lengths = torch.tensor([9, 4, 7, 1, 9, 5])
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = (old + 0.5 * torch.randn(b, t, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    return logp, old, adv, mask


def test_dapo_token_level_loss_equals_trl_dapo():
    logp, old, adv, mask = _rollouts(0)
    theirs = _trl_grpo_loss("dapo", logp, old, adv, mask)
    (g_theirs,) = torch.autograd.grad(theirs, logp)
    per_token = ppo_clip_loss(logp, old, adv, clip_low=0.2, clip_high=0.28)
    ours = aggregate(per_token, mask.bool(), float(loss_normalizer(mask.bool(), "token")), "token")
    (g_ours,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-12, rtol=0)


def test_grpo_sequence_level_loss_equals_trl_grpo():
    logp, old, adv, mask = _rollouts(1)
    theirs = _trl_grpo_loss("grpo", logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    per_token = ppo_clip_loss(logp, old, adv, clip_low=0.2, clip_high=0.2)
    ours = aggregate(per_token, mask.bool(), float(loss_normalizer(mask.bool(), "sequence")), "sequence")
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    (g_ours,) = torch.autograd.grad(ours, logp)
    (g_theirs,) = torch.autograd.grad(_trl_grpo_loss("grpo", logp, old, adv, mask, 0.2, 0.2), logp)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-12, rtol=0)


def test_oracle_detects_a_wrong_clip():
    """The comparison is sensitive: a different ε_high gives a different loss."""
    logp, old, adv, mask = _rollouts(2)
    theirs = _trl_grpo_loss("dapo", logp, old, adv, mask, eps_high=0.28)
    per_token = ppo_clip_loss(logp, old, adv, clip_low=0.2, clip_high=0.2)
    ours = aggregate(per_token, mask.bool(), float(mask.sum()), "token")
    assert abs(float(ours.detach() - theirs.detach())) > 1e-6


def test_dpo_sigmoid_loss_equals_trl():
    g = torch.Generator().manual_seed(0)
    n, t = 5, 7
    chosen_tok = -torch.rand(n, t, generator=g, dtype=torch.float64) * 2
    rejected_tok = -torch.rand(n, t, generator=g, dtype=torch.float64) * 2
    per_token = torch.cat([chosen_tok, rejected_tok]).requires_grad_(True)
    completion_mask = torch.ones(2 * n, t + 1, dtype=torch.long)
    ref_c = -torch.rand(n, generator=g, dtype=torch.float64) * 10
    ref_r = -torch.rand(n, generator=g, dtype=torch.float64) * 10
    beta = 0.1

    t_ = DPOTrainer.__new__(DPOTrainer)

    class _Policy(torch.nn.Module):
        def forward(self, **kwargs):
            z = torch.zeros(2 * n, t + 1, dtype=torch.float64)
            return SimpleNamespace(
                log_probs=per_token, entropy=z, mean_logits=z, is_top1=torch.zeros(2 * n, t + 1, dtype=torch.bool)
            )

    policy = _Policy().train()
    attrs = {
        "model": policy, "accelerator": _Accelerator(), "aux_loss_enabled": False, "ld_alpha": None,
        "precompute_ref_logps": True, "f_divergence_type": "reverse_kl", "loss_types": ["sigmoid"],
        "loss_weights": [1.0], "beta": beta, "use_weighting": False, "_metrics": {"train": defaultdict(list)},
        "_total_train_tokens": 0, "_tp_size": 1, "label_smoothing": 0.0,
    }
    for k, v in attrs.items():
        object.__setattr__(t_, k, v)
    inputs = {
        "input_ids": torch.zeros(2 * n, t + 1, dtype=torch.long), "attention_mask": completion_mask,
        "completion_mask": completion_mask, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r,
    }
    theirs = t_._compute_loss(policy, inputs, return_outputs=False)
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    (g_theirs,) = torch.autograd.grad(theirs, per_token)
    ours = dpo_sigmoid_loss(per_token[:n].sum(-1), per_token[n:].sum(-1), ref_c, ref_r, beta)
    (g_ours,) = torch.autograd.grad(ours, per_token)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-12, rtol=0)
