"""The causal-LM loss, normalised by the global number of loss tokens of the optimizer step.

``LossModule`` wraps the model so DDP/DeepSpeed see one ``forward(batch) -> loss``.
The loss of a micro-batch is ``sum(token CE) / global_loss_tokens``: summing these over
micro-steps and ranks gives the mean over the whole step whatever the split; the
engines undo their own averaging (see ``engine.py``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from codekiln.workloads.model import ops
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.train.data import IGNORE_INDEX


def token_ce_sum(model: Transformer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the labels that are not IGNORE_INDEX (fp32)."""
    hidden = model.hidden_states(
        batch["input_ids"],
        position_ids=batch.get("position_ids"),
        document_ids=batch.get("document_ids"),
        attention_mask=batch.get("attention_mask"),
    )
    return ops.linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]),
        model.output_weight(),
        batch["labels"].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        kernels=model.cfg.kernels,
    )


class LossModule(nn.Module):
    """``forward(batch)`` = summed CE / ``batch["loss_denominator"]`` (a python float or 0-d tensor)."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = token_ce_sum(self.model, batch) / batch["loss_denominator"]
        moe = self.model.moe_loss()  # MoE: router losses of this micro-batch, weighted by its share of tokens
        if isinstance(moe, torch.Tensor):
            share = (batch["labels"] != IGNORE_INDEX).sum() / batch["loss_denominator"]
            loss = loss + moe * share
        return loss


def global_loss_tokens(micro_batches: list[dict[str, torch.Tensor]]) -> int:
    """Loss tokens of the whole optimizer step, summed over micro-batches and ranks."""
    count = torch.tensor(sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro_batches), dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
    return max(1, int(count.item()))
