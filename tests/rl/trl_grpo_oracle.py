"""TRL's own GRPO loss as an oracle, shared by test_rl_trl_oracle.py and test_rl_loss_agg.py.

TRL computes the loss only inside ``GRPOTrainer._compute_loss``; we create the trainer without ``__init__``
(``cls.__new__``), set only the attributes ``_compute_loss`` reads and feed it our tensors through its model
hook. Import this module only after ``pytest.importorskip("trl")``.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch
from trl import GRPOTrainer


class Accelerator:
    """Single-process stand-in for accelerate: gather/reduce are identities."""

    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def grpo_trainer(loss_type: str, eps_low: float, eps_high: float, grad_accum: int = 1,
                 max_completion_length: int | None = None):
    """A ``GRPOTrainer`` with only the attributes ``_compute_loss`` reads, and its (dummy) model.

    Args:
        loss_type: TRL's ``loss_type`` (``grpo``, ``dapo``, ``bnpo``, ``dr_grpo``).
        eps_low: lower clip ε.
        eps_high: upper clip ε.
        grad_accum: gradient-accumulation steps (also ``steps_per_generation``).
        max_completion_length: the constant of ``dr_grpo``'s normaliser (unset when None).
    """
    t = GRPOTrainer.__new__(GRPOTrainer)
    model = torch.nn.Linear(1, 1).train()
    attrs = {
        "loss_type": loss_type, "epsilon_low": eps_low, "epsilon_high": eps_high, "beta": 0.0,
        "importance_sampling_level": "token", "top_entropy_quantile": 1.0, "off_policy_mask_threshold": None,
        "use_vllm": False, "vllm_importance_sampling_correction": False, "aux_loss_enabled": False,
        "_entropy_bonus_enabled": False, "current_gradient_accumulation_steps": grad_accum,
        "accelerator": Accelerator(), "model": model, "_metrics": {"train": defaultdict(list)},
        "args": SimpleNamespace(delta=None, steps_per_generation=grad_accum, use_bias_correction_kl=False),
    }
    if max_completion_length is not None:
        attrs["max_completion_length"] = max_completion_length
    for k, v in attrs.items():
        object.__setattr__(t, k, v)
    return t, model


def trl_grpo_loss(loss_type: str, logp, old, adv, mask, eps_low: float = 0.2, eps_high: float = 0.28,
                  max_completion_length: int | None = None):
    """TRL's GRPO-family loss on our tensors (per-token log-probs, old log-probs, advantages, completion mask).

    Args:
        loss_type: TRL's ``loss_type``.
        logp: current per-token log-probs (B, T), requires grad.
        old: old per-token log-probs (B, T).
        adv: advantages (B,).
        mask: completion mask (B, T), long.
        eps_low: lower clip ε.
        eps_high: upper clip ε.
        max_completion_length: ``dr_grpo``'s constant (unset when None).
    """
    trainer, model = grpo_trainer(loss_type, eps_low, eps_high, max_completion_length=max_completion_length)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(logp), None)
    inputs = {
        "prompt_ids": torch.zeros(len(adv), 2, dtype=torch.long), "prompt_mask": torch.ones(len(adv), 2),
        "completion_ids": torch.zeros_like(mask), "completion_mask": mask, "advantages": adv,
        "old_per_token_logps": old, "num_items_in_batch": mask.sum().double(),
    }
    return trainer._compute_loss(model, inputs)
