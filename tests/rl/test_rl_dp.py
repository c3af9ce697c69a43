"""Data parallel for real: two gloo processes each update on their shard; the parameters after the
step equal a single process updating on the whole batch (global token normaliser + SUM all-reduce)."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codekiln.workloads.rl.update import LossSettings, policy_update


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model, batch, shards, out) -> None:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        stats = policy_update(model, opt, batch.select(shards[rank]), LossSettings(), micro_batch_rollouts=3)
        out[rank] = ({k: v.clone() for k, v in model.state_dict().items()}, stats.loss, stats.loss_tokens)
    finally:
        dist.destroy_process_group()


def test_two_rank_update_equals_single_process(make_model, make_batch):
    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=3, group_size=4, truncated_rows=(5,))
    single = make_model(torch.float64)
    ref = policy_update(single, torch.optim.SGD(single.parameters(), lr=0.5), batch, LossSettings(), 16)

    shards = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]  # uneven on purpose
    manager = mp.get_context("fork").Manager()
    out = manager.dict()
    mp.start_processes(_worker, args=(2, _free_port(), model, batch, shards, out), nprocs=2, start_method="fork")
    for rank in range(2):
        state, loss, tokens = out[rank]
        assert tokens == ref.loss_tokens and abs(loss - ref.loss) < 1e-7
        for name, value in single.state_dict().items():
            torch.testing.assert_close(state[name], value, atol=1e-7, rtol=0, msg=name)
