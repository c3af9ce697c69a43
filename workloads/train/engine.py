"""Distributed setup and the two training engines (plain torch DDP, DeepSpeed ZeRO 0-3).

Both take a loss that is already normalised by the global number of loss tokens of
the optimizer step (see ``loss.py``); each engine rescales for the averaging its
backend does, so the gradient is the same whatever the split over ranks and
micro-steps.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from codekiln.workloads.train.config import TrainConfig


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(need_group: bool = False) -> DistEnv:
    """Read torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK); gloo on CPU, nccl on GPU.

    A single process gets a process group only when ``need_group`` (DeepSpeed wants one).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world == 1 and need_group and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        dist.init_process_group("gloo", rank=0, world_size=1)
    elif world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, device)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear and embedding weights), none on norms."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optimizer
    return torch.optim.AdamW(
        param_groups(model, o.weight_decay), lr=cfg.stages[0].lr, betas=(o.beta1, o.beta2), eps=o.eps,
        foreach=False,
    )


class TorchEngine:
    """DDP (or a single process): sum micro-step gradients, average over ranks, clip, AdamW."""

    def __init__(self, module: nn.Module, cfg: TrainConfig, env: DistEnv, bf16: bool) -> None:
        self.module, self.cfg, self.env, self.bf16 = module.to(env.device), cfg, env, bf16
        self.wrapped = module
        if env.world_size > 1:
            ids = [env.local_rank] if env.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        self.optimizer = build_optimizer(module, cfg)

    @property
    def loss_scale(self) -> float:
        """DDP averages gradients over ranks; undo it so the sum over the global batch remains."""
        return float(self.env.world_size)

    def forward_backward(self, batch: dict, last_micro: bool) -> torch.Tensor:
        sync = contextlib.nullcontext() if last_micro or self.env.world_size == 1 else self.wrapped.no_sync()
        autocast = torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with sync:
            with autocast:
                loss = self.wrapped(batch)
            (loss * self.loss_scale).backward()
        return loss.detach()

    def eval_forward(self, batch: dict) -> torch.Tensor:
        with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.module(batch).detach()

    def step(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.optimizer.grad_clip_norm
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip if clip else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.module.model.state_dict()

    def save(self, folder: Path) -> None:
        if self.env.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()},
                       folder / "state.pt")

    def load(self, folder: Path) -> None:
        state = torch.load(folder / "state.pt", map_location=self.env.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class DeepSpeedEngine:
    """DeepSpeed ZeRO 0-3 with a client AdamW; DeepSpeed does accumulation, averaging and clipping."""

    def __init__(self, module: nn.Module, cfg: TrainConfig, env: DistEnv, bf16: bool) -> None:
        import deepspeed

        self.cfg, self.env = cfg, env
        ds_config = {
            "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
            "gradient_accumulation_steps": cfg.grad_accum_steps,
            "train_batch_size": cfg.micro_batch_size * cfg.grad_accum_steps * env.world_size,
            "gradient_clipping": cfg.optimizer.grad_clip_norm or 0.0,
            "zero_optimization": {"stage": cfg.zero_stage},
            "bf16": {"enabled": bf16},
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
        }
        self.module = module
        optimizer = build_optimizer(module, cfg)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=ds_config, dist_init_required=not dist.is_initialized()
        )

    @property
    def loss_scale(self) -> float:
        """DeepSpeed divides by GAS and averages over ranks; undo both."""
        return float(self.env.world_size * self.cfg.grad_accum_steps)

    def forward_backward(self, batch: dict, last_micro: bool) -> torch.Tensor:
        loss = self.engine(batch)
        self.engine.backward(loss * self.loss_scale)
        if not last_micro:
            self.engine.step()  # DeepSpeed only counts micro-steps here
        return loss.detach()

    def eval_forward(self, batch: dict) -> torch.Tensor:
        return self.engine(batch).detach()

    def step(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def model_state(self) -> dict[str, torch.Tensor]:
        """Full (gathered) weights of the inner model; under ZeRO-3 every rank must call this."""
        if self.cfg.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                return {k: v.detach().clone() for k, v in self.module.model.state_dict().items()}
        return self.module.model.state_dict()

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag="ds", save_latest=False)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag="ds")
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder}")


def build_engine(module: nn.Module, cfg: TrainConfig, env: DistEnv) -> TorchEngine | DeepSpeedEngine:
    """The engine for ``cfg.backend``; bf16 when ``precision`` says so (auto: on GPU)."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and env.device.type == "cuda")
    if cfg.backend == "deepspeed":
        return DeepSpeedEngine(module, cfg, env, bf16)
    return TorchEngine(module, cfg, env, bf16)
