"""Sharded data parallel for real: two gloo processes, the policy (and the reference) sharded with
FSDP2, AdamW state sharded; after the steps the parameters equal a single unsharded process
updating on the whole batch (global normaliser + FSDP's SUM reduce-scatter, no hand all-reduce)."""

from __future__ import annotations

import copy
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codekiln.workloads.rl.sharding import full_state_dict, is_sharded, shard_model, shard_reference
from codekiln.workloads.rl.update import LossSettings, policy_update

SETTINGS = LossSettings(kl_coef=0.05, dual_clip_c=3.0)
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model, ref, batches, shards, out) -> None:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        shard_model(model)
        shard_reference(ref, cpu_offload=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
        stats = [policy_update(model, opt, b.select(shards[rank]), SETTINGS, micro_batch_rollouts=2,
                               grad_clip_norm=1.0, ref_model=ref) for b in batches]
        local = {k: tuple(v.to_local().shape) for k, v in model.state_dict().items()}
        exp_avg = next(iter(opt.state.values()))["exp_avg"]
        out[rank] = (full_state_dict(model), [(s.loss, s.loss_tokens, s.grad_norm, s.kl) for s in stats], local,
                     type(exp_avg).__name__, is_sharded(model))
    finally:
        dist.destroy_process_group()


def test_sharded_two_rank_adamw_steps_equal_single_process(make_model, make_batch):
    model = make_model(torch.float64)
    ref = copy.deepcopy(model)
    batches = [make_batch(model, n_groups=3, group_size=4, truncated_rows=(5,), seed=s) for s in range(STEPS)]
    single, single_ref = copy.deepcopy(model), copy.deepcopy(model)
    opt = torch.optim.AdamW(single.parameters(), lr=1e-2, weight_decay=0.01)
    ref_stats = [policy_update(single, opt, b, SETTINGS, 16, grad_clip_norm=1.0, ref_model=single_ref)
                 for b in batches]

    shards = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]  # uneven: rank 1 runs more micro-batches
    out = mp.get_context("fork").Manager().dict()
    mp.start_processes(_worker, args=(2, _free_port(), model, ref, batches, shards, out), nprocs=2,
                       start_method="fork")
    full_shapes = {k: tuple(v.shape) for k, v in single.state_dict().items()}
    for rank in range(2):
        state, stats, local, opt_state_type, sharded = out[rank]
        assert sharded and opt_state_type == "DTensor"  # optimizer state lives on the shards
        assert local["lm_head.weight"][0] == (full_shapes["lm_head.weight"][0] + 1 - rank) // 2  # 19 / 18 rows
        for (loss, tokens, gnorm, kl), want in zip(stats, ref_stats, strict=True):
            assert tokens == want.loss_tokens
            assert abs(loss - want.loss) < 1e-12 and abs(kl - want.kl) < 1e-12
            assert abs(gnorm - want.grad_norm) < 1e-12 * want.grad_norm
        diffs = {name: float((state[name] - value).abs().max()) for name, value in single.state_dict().items()}
        assert max(diffs.values()) < 1e-12, diffs  # fp64 summation order only
        moved = max(float((state[n] - v).abs().max()) for n, v in model.state_dict().items())
        assert moved > 1e-3  # the steps really changed the parameters
