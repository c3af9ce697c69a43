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


def release(model: nn.Module | None) -> None:
    """Free the gathered root parameters after a no-grad forward (the root stays unsharded after its
    forward, for the LM head; a backward would reshard it, a reference or old-policy pass never does)."""
    if model is not None and is_sharded(model):
        model.reshard()


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


# ---------------------------------------------------------------- the RL trainer's sharded state
def sharding_wanted(cfg, world_size: int) -> bool:
    """Whether an RL run shards its policy (``spec.rl.sharding.strategy``), with a clear error for
    configurations whose gradients could not be combined across processes."""
    strategy = cfg.sharding.strategy
    if cfg.algorithm == "dpo":  # DPO keeps its own replicated update (dpo.py)
        if strategy == "fsdp":
            raise ValueError("sharding.strategy fsdp is not supported with algorithm dpo (use auto)")
        return False
    if strategy == "none" and world_size > 1:
        raise ValueError(f"sharding.strategy none runs one process, this run has {world_size}: use fsdp or auto")
    return strategy == "fsdp" or (strategy == "auto" and world_size > 1)


def shard_trainer(trainer) -> None:
    """Shard an RLTrainer's policy, reference and optimizer (once; after the warm start or a resume).

    The torch engine keeps an unsharded rollout replica (generation needs no collectives; weights
    are streamed into it after each step). AdamW is rebuilt over the sharded parameters with the
    same hyper-parameters and any existing state is re-sharded into it.
    """
    if getattr(trainer, "sharded", False) or not sharding_wanted(trainer.cfg, world()[1]):
        return
    import copy
    import inspect

    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    cfg, model, old = trainer.cfg, trainer.model, trainer.optimizer
    full_osd = get_optimizer_state_dict(model, old) if old.state else None
    engine_model = getattr(trainer.engine, "model", None)
    if engine_model is model:  # torch engine sampling from the policy: give it its own copy
        trainer.engine.model = copy.deepcopy(model)
    cuda = next(model.parameters()).is_cuda
    if trainer.ref_model is not None:
        shard_reference(trainer.ref_model, cpu_offload=cfg.sharding.reference_cpu_offload and cuda)
    shard_model(model, cpu_offload=cfg.sharding.cpu_offload and cuda)
    accepted = inspect.signature(type(old).__init__).parameters
    trainer.optimizer = type(old)(model.parameters(), **{k: v for k, v in old.defaults.items() if k in accepted})
    if full_osd is not None:
        set_optimizer_state_dict(model, trainer.optimizer, full_osd, options=StateDictOptions(full_state_dict=True))
    trainer.sharded = True


def policy_weights(model: nn.Module):
    """What engines receive after a step: the state dict, or a per-parameter gathered stream when sharded."""
    return iter_full_parameters(model) if is_sharded(model) else model.state_dict()


def model_state(model: nn.Module | None) -> dict | None:
    """A checkpointable full state dict (collective when sharded: every rank calls)."""
    if model is None:
        return None
    return full_state_dict(model) if is_sharded(model) else model.state_dict()


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state for a checkpoint; when sharded, the full state keyed by parameter name
    (collective; gathered onto rank 0's CPU)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load either checkpoint layout (index-keyed from a plain run, name-keyed from a sharded one)."""
    keys = list(state.get("state", {}).keys())
    if not is_sharded(model) and all(isinstance(k, int) for k in keys):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=is_sharded(model)))
