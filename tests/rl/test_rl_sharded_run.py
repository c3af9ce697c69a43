"""The RL trainer with more than one process shards by itself (sharding.strategy auto): two gloo
processes train a KL-regularised GRPO run with FSDP2 policy, reference and AdamW state, write one
gathered checkpoint and resume from it."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codekiln.workloads.rl.config import RLConfig


@pytest.fixture(scope="module")
def sandbox_url():
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(out: str, steps: int) -> RLConfig:
    return RLConfig.model_validate({
        "model": {"preset": "tiny", "maxSeqLen": 128}, "device": "cpu", "cpuThreads": 1, "promptsPerStep": 2,
        "rolloutsPerPrompt": 4, "maxResponseTokens": 12, "steps": steps, "optimizer": {"lr": 1e-3, "weightDecay": 0.1},
        "klCoef": 0.05, "dynamicSampling": {"enabled": False}, "tasks": {"source": "builtin", "limit": 4},
        "warmStart": {"sftSteps": 10, "sftCorrectFraction": 0.5}, "outputDir": out, "seed": 1,
        "checkpoint": {"everySteps": 1},
    })


def _worker(rank: int, port: int, url: str, out: str, result) -> None:
    from codekiln.workloads.rl.rewards import SandboxScorer
    from codekiln.workloads.rl.sharding import full_state_dict, is_sharded
    from codekiln.workloads.rl.trainer import RLTrainer

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        trainer = RLTrainer(_cfg(out, 2), SandboxScorer(url), out)
        trainer.warm_start()
        trainer.finish_setup()
        start = full_state_dict(trainer.model)
        for _ in range(2):
            trainer.train_step()
        trainer.save()
        trained = full_state_dict(trainer.model)
        resumed = RLTrainer(_cfg(out, 3), SandboxScorer(url), out)
        assert resumed.try_resume() and resumed.step == 2
        loaded = full_state_dict(resumed.model)
        m = resumed.train_step()
        result[rank] = {
            "sharded": is_sharded(trainer.model) and is_sharded(trainer.ref_model) and is_sharded(resumed.model),
            "start": start, "trained": trained, "loaded": loaded, "kl": m["kl"], "step": resumed.step,
            "replica": trainer.engine.model is not trainer.model,
        }
    finally:
        dist.destroy_process_group()


def test_two_process_rl_run_shards_checkpoints_and_resumes(sandbox_url, tmp_path):
    out = mp.get_context("fork").Manager().dict()
    mp.start_processes(_worker, args=(_free_port(), sandbox_url, str(tmp_path / "run"), out), nprocs=2,
                       start_method="fork")
    r0, r1 = out[0], out[1]
    assert r0["sharded"] and r1["sharded"] and r0["replica"] and r0["step"] == 3 and r0["kl"] >= 0
    for name, value in r0["trained"].items():
        assert torch.equal(value, r1["trained"][name]), name  # one model, two shards
        assert torch.equal(value, r0["loaded"][name]), name  # the gathered checkpoint round-trips
    assert max(float((r0["trained"][k] - r0["start"][k]).abs().max()) for k in r0["start"]) > 1e-4
    state = torch.load(tmp_path / "run" / "checkpoints" / "rl_state.pt", weights_only=False)
    assert state["policy"]["lm_head.weight"].shape == r0["trained"]["lm_head.weight"].shape  # full, not a shard
    assert all(isinstance(k, str) for k in state["optimizer"]["state"])  # name-keyed full AdamW state
