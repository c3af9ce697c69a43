"""Sharded RL training through FSDP2 (``torch.distributed.fsdp.fully_shard``).

The policy's parameters, gradients and AdamW state are sharded over the data-parallel
ranks (each block is its own FSDP unit, then the root); the reference policy is sharded
the same way, optionally with its shards offloaded to CPU (``CPUOffloadPolicy``: all-gathered
to the device only while its forward runs). Gradients are reduce-scattered by FSDP itself
with a divide factor of 1, i.e. summed: the RL loss is already divided by the *global*
normaliser of the step, so sums (not means) over ranks keep results split invariant.
There is no hand-written gradient all-reduce anywhere.

Works with NCCL on GPUs and gloo on CPU (the equivalence test runs 2 CPU processes).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` was wrapped by :func:`shard_model`."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(
    model: nn.Module, *, cpu_offload: bool = False, reshard_after_forward: bool = True,
    param_dtype: torch.dtype | None = None, reduce_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Shard ``model`` in place with FSDP2: every transformer block, then the root.

    Args:
        model: our ``Transformer`` (anything with ``.layers``) on its training device.
        cpu_offload: keep the shards (and their gradients/optimizer state) in CPU memory.
        reshard_after_forward: free the gathered parameters after each block's forward (ZeRO-3).
        param_dtype: compute dtype of the gathered parameters (mixed precision; None: as stored).
        reduce_dtype: dtype of the gradient reduce-scatter (None: the parameter dtype).
    """
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        FSDPModule,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sharding needs an initialised process group (torchrun)")
    kw = {
        "reshard_after_forward": reshard_after_forward,
        "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype),
        "offload_policy": CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if cpu_offload else OffloadPolicy(),
    }
    for block in getattr(model, "layers", []):
        fully_shard(block, **kw)
    fully_shard(model, **{**kw, "reshard_after_forward": False})
    # log-probs call ``hidden_states`` then use ``lm_head.weight``: FSDP must unshard the root for that
    # method too (the root keeps its parameters unsharded until backward, so the LM head sees full weights)
    if hasattr(model, "hidden_states"):
        register_fsdp_forward_method(model, "hidden_states")
    for unit in model.modules():  # per FSDP unit (the setters are not recursive)
        if isinstance(unit, FSDPModule):
            unit.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
            unit.set_gradient_divide_factor(1.0)  # SUM over ranks: the loss carries the global normaliser
    return model


def shard_reference(model: nn.Module, cpu_offload: bool = True) -> nn.Module:
    """Shard a frozen reference policy (optionally offloaded to CPU between its forwards)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return shard_model(model.eval(), cpu_offload=cpu_offload)


def iter_full_parameters(model: nn.Module, device: torch.device | str | None = None
                         ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) one parameter at a time: an all-gather per tensor, never the whole
    model at once on one rank (what engines stream into their own copy). Every rank must iterate."""
    from torch.distributed.tensor import DTensor

    for name, tensor in model.state_dict().items():
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        yield name, (tensor.to(device) if device is not None else tensor).detach()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict as plain CPU tensors (every rank must call; rank 0 writes checkpoints)."""
    return {name: t.cpu() for name, t in iter_full_parameters(model)}


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full (unsharded) state dict into a sharded or plain model."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def all_reduce_max(value: int) -> int:
    """Max of an int over ranks (identity without a process group)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.long, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of a small CPU tensor over ranks (in place; identity without a process group)."""
    if world()[1] > 1:
        t = values.to(_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        values.copy_(t)
    return values


def _comm_device() -> torch.device:
    """NCCL reduces device tensors only; gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
