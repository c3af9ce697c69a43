"""The one batch type passed between rollout, reward and update."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class RolloutBatch:
    """Rollouts of several prompt groups. Per-token tensors are [N, R], right-padded.

    Attributes:
        prompts: prompt token ids of each rollout.
        responses: response token ids (including a stop token when one was sampled).
        old_logp: sampling-time per-token log-probs [N, R].
        group_ids: prompt group of each rollout [N] (long).
        task_ids: task id of each rollout.
        truncated: the response hit the token budget [N] (bool).
        rewards: scalar reward [N] (after shaping).
        passed: 1.0 where all unit tests passed [N].
        advantages: per-rollout advantages [N] (set by the algorithm).
        mean_entropy: old-policy mean token entropy per rollout [N] (for KAT).
        token_mask: [N, R] bool, False on response tokens the policy did not sample (tool observations
            of multi-turn agent rollouts); they stay in the context but never carry loss. None: all sampled.
    """

    prompts: list[list[int]]
    responses: list[list[int]]
    old_logp: torch.Tensor
    group_ids: torch.Tensor
    task_ids: list[str]
    truncated: torch.Tensor
    rewards: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    passed: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    advantages: torch.Tensor | None = None
    mean_entropy: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def response_mask(self) -> torch.Tensor:
        """[N, R] True on real response tokens."""
        width = self.old_logp.shape[1] if self.old_logp.dim() == 2 else 0
        lengths = torch.tensor([len(r) for r in self.responses])
        return torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)

    def loss_mask(self, overlong_filtering: bool) -> torch.Tensor:
        """Tokens that carry loss: response tokens, minus truncated rollouts when filtering."""
        mask = self.response_mask
        if overlong_filtering:
            mask = mask & ~self.truncated.bool().unsqueeze(-1)
        if self.token_mask is not None:
            mask = mask & self.token_mask[:, : mask.shape[1]].to(mask.device)
        return mask

    def select(self, index: list[int] | torch.Tensor) -> RolloutBatch:
        """Rows ``index`` as a new batch (per-token tensors re-trimmed to the longest response)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                out[f.name] = [value[i] for i in idx.tolist()]
            elif isinstance(value, torch.Tensor) and value.numel() and value.shape[0] == len(self):
                out[f.name] = value[idx]
            else:
                out[f.name] = value
        width = max((len(out["responses"][i]) for i in range(len(idx))), default=0)
        out["old_logp"] = out["old_logp"][:, :width]
        if out["token_mask"] is not None:
            out["token_mask"] = out["token_mask"][:, :width]
        return RolloutBatch(**out)

    @staticmethod
    def concat(batches: list[RolloutBatch]) -> RolloutBatch:
        """Concatenate batches; group ids are renumbered to stay distinct."""
        if not batches:
            raise ValueError("nothing to concatenate")
        width = max(b.old_logp.shape[1] for b in batches)
        out: dict = {}
        offset = 0
        groups = []
        for b in batches:
            groups.append(b.group_ids + offset)
            offset += int(b.group_ids.max()) + 1 if len(b) else 0
        for f in fields(RolloutBatch):
            values = [getattr(b, f.name) for b in batches]
            if f.name == "old_logp":
                out[f.name] = torch.cat([torch.nn.functional.pad(v, (0, width - v.shape[1])) for v in values])
            elif f.name == "token_mask":
                out[f.name] = None if all(v is None for v in values) else torch.cat([
                    torch.nn.functional.pad(b.response_mask if v is None else v.bool(),
                                            (0, width - b.old_logp.shape[1]))
                    for b, v in zip(batches, values, strict=True)])
            elif f.name == "group_ids":
                out[f.name] = torch.cat(groups)
            elif isinstance(values[0], list):
                out[f.name] = [x for v in values for x in v]
            elif all(isinstance(v, torch.Tensor) for v in values):
                out[f.name] = torch.cat(values)
            else:
                out[f.name] = None
        return RolloutBatch(**out)
