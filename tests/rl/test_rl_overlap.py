"""One-step-stale async rollouts: off by default and exact when nothing is stale; when on, step n+1's
rollouts are sampled by θ_n in a background thread while step n trains, and the loss is importance-weighted
against that behaviour policy."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.rl.losses import aggregate, ppo_clip_loss
from codekiln.workloads.rl.rewards import SandboxScorer
from codekiln.workloads.rl.trainer import RLTrainer
from codekiln.workloads.rl.update import LossSettings, accumulate_gradients, global_normalizer


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def test_behaviour_weights_are_exactly_one_on_policy(make_model, make_batch):
    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=2, group_size=4)
    settings = LossSettings(dual_clip_c=3.0)
    norm = global_normalizer(batch, settings)
    model.zero_grad()
    accumulate_gradients(model, batch, settings, norm, 4)
    sync = _grads(model)
    model.zero_grad()
    accumulate_gradients(model, batch, settings, norm, 4, behaviour_logp=batch.old_logp.clone())
    for name, g in _grads(model).items():
        assert torch.equal(g, sync[name]), name  # bit for bit: exp(0) == 1


def test_stale_batches_are_weighted_by_the_behaviour_ratio(make_model, make_batch):
    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=1, group_size=3)
    settings = LossSettings(packed=False)
    behaviour = batch.old_logp - 0.3 * torch.rand(batch.old_logp.shape, generator=torch.Generator().manual_seed(0),
                                                  dtype=batch.old_logp.dtype)
    norm = global_normalizer(batch, settings)
    loss, _ = accumulate_gradients(model, batch, settings, norm, 3, behaviour_logp=behaviour)
    from codekiln.workloads.rl.logprobs import response_logprobs

    with torch.no_grad():
        logp, _ = response_logprobs(model, batch.prompts, batch.responses, packed=False)
        mask = batch.loss_mask(True)
        per_token = ppo_clip_loss(logp, batch.old_logp, batch.advantages) * torch.exp(batch.old_logp - behaviour)
        want = aggregate(per_token, mask, norm)
    assert abs(float(loss) - float(want)) < 1e-12


@pytest.fixture(scope="module")
def sandbox_url():
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as url:
        yield url


def _cfg(tmp_path, **over) -> RLConfig:
    base = {
        "model": {"preset": "tiny", "maxSeqLen": 128}, "device": "cpu", "cpuThreads": 1, "promptsPerStep": 2,
        "rolloutsPerPrompt": 4, "maxResponseTokens": 16, "steps": 3, "optimizer": {"lr": 1e-3},
        "dynamicSampling": {"enabled": False}, "tasks": {"source": "builtin", "limit": 4},
        "warmStart": {"sftSteps": 20, "sftCorrectFraction": 0.5}, "outputDir": str(tmp_path / "run"), "seed": 3,
    }
    base.update(over)
    return RLConfig.model_validate(base)


def test_async_rollouts_overlap_training_and_sample_from_the_previous_policy(sandbox_url, tmp_path):
    trainer = RLTrainer(_cfg(tmp_path, rolloutStaleness=1), SandboxScorer(sandbox_url), tmp_path / "a")
    trainer.warm_start()
    trainer.finish_setup()
    assert trainer.engine.model is not trainer.model  # never sample from weights being trained
    calls, updates = [], []
    generate, step = trainer.engine.generate, trainer.optimizer.step

    def recording_generate(prompts, params):
        w = trainer.engine.model.lm_head.weight.detach().clone()
        t0 = time.perf_counter()
        out = generate(prompts, params)
        calls.append((threading.current_thread().name, w, t0, time.perf_counter()))
        return out

    def recording_step(*a, **k):
        updates.append((trainer.model.lm_head.weight.detach().clone(), time.perf_counter()))
        return step(*a, **k)

    trainer.engine.generate, trainer.optimizer.step = recording_generate, recording_step
    theta0 = trainer.model.lm_head.weight.detach().clone()
    metrics = [trainer.train_step() for _ in range(3)]
    assert trainer.step == 3 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    threads = [c[0] for c in calls]
    assert threads[0] == "MainThread" and all(t.startswith("codekiln-rollouts") for t in threads[1:])
    assert len(calls) == 3  # no prefetch after the last step
    # step 2's rollouts (second call) were sampled by θ_0 while step 1 trained (θ_0 → θ_1)
    assert torch.equal(calls[1][1], theta0) and torch.equal(updates[0][0], theta0)
    assert calls[1][2] < updates[0][1]  # generation started before the step-1 update finished
    assert torch.equal(calls[2][1], updates[1][0])  # step 3's were sampled by θ_1
    # a step reports the generation that ran during it: the last step overlapped none
    assert all(m["time_generate_s"] > 0 and m["rollout_tokens_per_second"] > 0 for m in metrics[:2])
    assert metrics[2]["time_generate_s"] == 0 and all(m["time_train_s"] > 0 for m in metrics)
    trainer.overlap.close()


def test_async_first_step_equals_the_synchronous_step(sandbox_url, tmp_path):
    """Nothing is stale in the first step: async and sync updates agree (up to the engine's fp32 log-probs)."""
    runs = {}
    for staleness in (0, 1):
        t = RLTrainer(_cfg(tmp_path, rolloutStaleness=staleness, steps=1), SandboxScorer(sandbox_url),
                      tmp_path / str(staleness))
        t.warm_start()
        t.finish_setup()
        t.train_step()
        runs[staleness] = t.model.state_dict()
    diff = max(float((runs[0][k] - runs[1][k]).abs().max()) for k in runs[0])
    assert diff < 1e-5, diff


def test_async_with_colocated_vllm_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rolloutStaleness.*vllm.mode server"):
        _cfg(tmp_path, rolloutStaleness=1, engine="vllm")
    assert _cfg(tmp_path).rollout_staleness == 0  # off by default
