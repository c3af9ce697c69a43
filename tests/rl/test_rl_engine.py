"""Rollout engines: the torch engine's KV-cache sampling and the lazily imported vLLM engine."""

from __future__ import annotations

import types

import pytest
import torch

from codekiln.workloads.rl.engines import SamplingParams, build_engine
from codekiln.workloads.rl.engines.base import finish_completion
from codekiln.workloads.rl.engines.torch_engine import top_p_filter
from codekiln.workloads.rl.logprobs import response_logprobs_unpacked


def test_kv_cache_logprobs_match_a_full_forward(make_model):
    model = make_model(torch.float32)
    engine = build_engine("torch", model)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13]]  # different lengths exercise left padding
    outs = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=0.7, seed=0))
    assert [len(o.token_ids) for o in outs] == [12, 12, 12]
    assert all(o.finish_reason == "length" for o in outs)
    logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs], temperature=0.7)
    for i, o in enumerate(outs):
        torch.testing.assert_close(logp[i, : len(o.logprobs)], torch.tensor(o.logprobs), atol=1e-5, rtol=0)


def test_stop_tokens_stop_sequences_and_seeded_determinism(make_model):
    model = make_model(torch.float32, vocab=8)  # small vocabulary: stops happen quickly
    engine = build_engine("torch", model)
    params = SamplingParams(max_tokens=24, stop_token_ids=[0], seed=3)
    outs = engine.generate([[1, 2]] * 12, params)
    for o in outs:
        assert (o.finish_reason == "stop") == (o.token_ids[-1] == 0)
        assert 0 not in o.token_ids[:-1]
    assert any(o.finish_reason == "stop" for o in outs)
    again = engine.generate([[1, 2]] * 12, params)
    assert [o.token_ids for o in outs] == [o.token_ids for o in again]
    seq = engine.generate([[1, 2]] * 12, SamplingParams(max_tokens=24, stop_sequences=[[3, 3]], seed=4))
    for o in seq:
        if o.finish_reason == "stop":
            assert o.token_ids[-2:] == [3, 3]
        body = o.token_ids[:-2] if o.finish_reason == "stop" else o.token_ids
        assert all(body[i : i + 2] != [3, 3] for i in range(len(body) - 1))


def test_abort_fn_ends_a_completion_early(make_model):
    engine = build_engine("torch", make_model(torch.float32))
    outs = engine.generate([[1, 2], [3]], SamplingParams(max_tokens=10, seed=0, abort_fn=lambda row, t: row == 0))
    assert outs[0].finish_reason == "aborted" and len(outs[0].token_ids) == 1
    assert outs[1].finish_reason == "length" and len(outs[1].token_ids) == 10


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.1)).sum() == 1  # the top token always survives
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_sampling_never_draws_outside_the_nucleus(make_model):
    model = make_model(torch.float32, vocab=9)
    engine = build_engine("torch", model)
    outs = engine.generate([[1]] * 64, SamplingParams(max_tokens=1, top_p=0.3, seed=0))
    with torch.no_grad():
        probs = model(torch.tensor([[1]]))[0, -1].softmax(-1)
    allowed = torch.isfinite(top_p_filter(probs.log().unsqueeze(0), 0.3))[0]
    assert all(allowed[o.token_ids[0]] for o in outs)


def test_bad_sampling_params_are_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(max_tokens=4, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(max_tokens=4, top_p=0)
    with pytest.raises(ValueError, match="engine"):
        build_engine("sglang", None)


# ---------------------------------------------------------------- vLLM: everything testable without a GPU
def test_finish_completion_applies_token_stops_and_aborts_after_sampling():
    params = SamplingParams(max_tokens=8, stop_sequences=[[3, 3]], abort_fn=lambda row, t: row == 1 and len(t) == 2)
    c = finish_completion([5, 3, 3, 7, 9], [-1.0, -2, -3, -4, -5], "length", params, row=0)
    assert (c.token_ids, c.logprobs, c.finish_reason) == ([5, 3, 3], [-1.0, -2, -3], "stop")
    a = finish_completion([5, 6, 7, 8], [-1.0] * 4, "length", params, row=1)
    assert (a.token_ids, a.finish_reason) == ([5, 6], "aborted")
    kept = finish_completion([5, 6, 0], [-1.0] * 3, "stop", SamplingParams(max_tokens=8), row=0)
    assert (kept.token_ids, kept.finish_reason) == ([5, 6, 0], "stop")


def test_vllm_colocate_helpers_tp_groups_and_per_row_seeds():
    from codekiln.workloads.rl.engines.vllm_engine import completion_from_vllm, tp_groups, vllm_sampling_kwargs

    assert tp_groups(8, 2) == [[0, 1], [2, 3], [4, 5], [6, 7]] and tp_groups(2, 1) == [[0], [1]]
    with pytest.raises(ValueError, match="tensorParallelSize"):
        tp_groups(6, 4)
    params = SamplingParams(max_tokens=5, temperature=0.6, top_p=0.9, stop_token_ids=[0], seed=7)
    kws = [vllm_sampling_kwargs(params, i) for i in range(4)]
    assert len({k["seed"] for k in kws}) == 4  # a group repeating one prompt must not share a seed
    assert kws[0]["logprobs"] == 0 and not kws[0]["detokenize"] and kws[0]["stop_token_ids"] == [0]
    lp = types.SimpleNamespace
    out = lp(token_ids=[4, 0], finish_reason="stop", logprobs=[{4: lp(logprob=-0.5)}, {0: lp(logprob=-1.5)}])
    c = completion_from_vllm(out, params, 0)
    assert (c.token_ids, c.logprobs, c.finish_reason) == ([4, 0], [-0.5, -1.5], "stop")


def test_vllm_server_request_shape_and_parsing():
    from codekiln.workloads.rl.engines.vllm_server import completions_payload, parse_choice, prompt_runs

    assert prompt_runs([[1], [1], [2], [1], [1], [1]]) == [(0, 2), (2, 1), (3, 3)]
    body = completions_payload("m", [1, 2], 4, SamplingParams(max_tokens=3, stop_token_ids=[0]), seed=11)
    assert body["n"] == 4 and body["prompt"] == [1, 2] and body["seed"] == 11 and body["return_token_ids"]
    ids, lps, reason = parse_choice({"finish_reason": "length", "logprobs": {
        "tokens": ["token_id:5", "token_id:6"], "token_logprobs": [-0.1, -0.2]}})
    assert (ids, lps, reason) == ([5, 6], [-0.1, -0.2], "length")


def test_vllm_server_engine_generates_over_real_http(make_model):
    from vllm_compat_server import CompatServer

    from codekiln.workloads.rl.config import RLConfig, VLLMConfig

    model = make_model(torch.float32, vocab=8)
    prompts = [[1, 2]] * 3 + [[4]] * 2 + [[1, 2]]
    params = SamplingParams(max_tokens=6, stop_token_ids=[0], stop_sequences=[[3, 3]], seed=5)
    with CompatServer(model) as url:
        engine = build_engine("vllm", model, config=VLLMConfig(mode="server", server_url=url))
        outs = engine.generate(prompts, params)
        server = engine  # the same requests twice: seeded, reproducible
        again = server.generate(prompts, params)
    assert [o.token_ids for o in outs] == [o.token_ids for o in again] and len(outs) == 6
    assert len({tuple(o.token_ids) for o in outs[:3]}) > 1  # one request with n=3: different samples
    # the rollouts carry the served model's log-probs (the server here samples from `model` itself)
    logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs])
    for i, o in enumerate(outs):
        assert all(o.token_ids[k:k + 2] != [3, 3] for k in range(len(o.token_ids) - 2))
        torch.testing.assert_close(logp[i, : len(o.logprobs)], torch.tensor(o.logprobs), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="serverUrl"):
        RLConfig.model_validate({"engine": "vllm", "vllm": {"mode": "server"}})


def test_torch_engine_replica_receives_streamed_weights(make_model):
    live, replica = make_model(torch.float32, seed=0), make_model(torch.float32, seed=1)
    engine = build_engine("torch", replica)
    engine.update_weights((k, v) for k, v in live.state_dict().items())  # a stream, as from a sharded policy
    for k, v in live.state_dict().items():
        assert torch.equal(replica.state_dict()[k], v) and replica.state_dict()[k].data_ptr() != v.data_ptr()
    with pytest.raises(KeyError, match="nope"):
        engine.update_weights({"nope": torch.zeros(1)})


def _vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _vllm_model():
    """A small Llama vLLM can serve (head dim 64 for its attention kernels)."""
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(preset="tiny", vocab_size=512, dim=256, n_heads=4, n_kv_heads=2, ffn_dim=512,
                                    max_seq_len=512))
    model.reset_parameters(std=0.05)
    return model.cuda()


@pytest.mark.vllm
@pytest.mark.gpu
@pytest.mark.skipif(not _vllm_available(), reason="needs the vllm package and a CUDA GPU")
def test_vllm_colocated_sleep_wake_and_streamed_weight_sync():
    from codekiln.workloads.rl.config import VLLMConfig

    model = _vllm_model()
    engine = build_engine("vllm", model, config=VLLMConfig(gpu_memory_utilization=0.2, dtype="float32"))
    prompts = [[1, 2, 3]] * 4
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=0)
    outs = engine.generate(prompts, params)
    assert len({tuple(o.token_ids) for o in outs}) > 1  # per-row seeds
    logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs])
    for i, o in enumerate(outs):
        torch.testing.assert_close(logp[i, : len(o.logprobs)].cpu(), torch.tensor(o.logprobs), atol=2e-2, rtol=0)
    free_awake = torch.cuda.mem_get_info()[0]
    engine.sleep()
    assert torch.cuda.mem_get_info()[0] > free_awake  # sleep gave memory back to the trainer
    with torch.no_grad():  # a different policy: streamed in, vLLM must follow it
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engine.wake_up()
    engine.update_weights((k, v) for k, v in model.state_dict().items())
    outs = engine.generate(prompts, params)
    logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs])
    for i, o in enumerate(outs):
        torch.testing.assert_close(logp[i, : len(o.logprobs)].cpu(), torch.tensor(o.logprobs), atol=2e-2, rtol=0)


@pytest.mark.vllm
@pytest.mark.gpu
@pytest.mark.skipif(not _vllm_available(), reason="needs the vllm package and a CUDA GPU")
def test_vllm_server_mode_against_a_real_vllm_server(tmp_path):
    """`vllm serve` on an exported policy; weight pushes need a second GPU (NCCL cannot pair two processes
    on one device), so with one GPU only generation is checked."""
    import os
    import socket
    import subprocess
    import sys

    from codekiln.workloads.model.hf import char_tokenizer_json, export_hf

    model = _vllm_model()
    tok = char_tokenizer_json([chr(32 + i % 95) + str(i // 95) if i >= 95 else chr(32 + i) for i in range(510)],
                              ("<pad>", "<eot>"), tmp_path / "tokenizer.json")
    folder = export_hf(model, model.cfg, tmp_path / "hf", tokenizer_json=tok, dtype=torch.float32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--port", str(port),
           "--gpu-memory-utilization", "0.25", "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
           "--weight-transfer-config", '{"backend": "nccl"}']
    log_path = tmp_path / "server.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "1"} if torch.cuda.device_count() > 1 else None  # own GPU
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env) as server:
        try:
            _check_server_mode(model, server, port, tmp_path)
        finally:
            server.terminate()
            server.wait(30)


def _check_server_mode(model, server, port: int, tmp_path) -> None:
    import time
    import urllib.request

    from codekiln.workloads.rl.config import VLLMConfig

    deadline = time.time() + 240
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(2)
    engine = build_engine("vllm", model, config=VLLMConfig(mode="server", server_url=f"http://127.0.0.1:{port}",
                                                            dtype="float32"))
    prompts = [[1, 2, 3]] * 4 + [[7, 8]] * 2
    outs = engine.generate(prompts, SamplingParams(max_tokens=8, seed=0))
    assert len(outs) == 6 and len({tuple(o.token_ids) for o in outs[:4]}) > 1
    logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs])
    for i, o in enumerate(outs):
        torch.testing.assert_close(logp[i, : len(o.logprobs)].cpu(), torch.tensor(o.logprobs), atol=2e-2, rtol=0)
    if torch.cuda.device_count() > 1:  # the server runs on GPU 1, the trainer pushes from GPU 0
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        engine.update_weights(model.state_dict())
        outs = engine.generate(prompts, SamplingParams(max_tokens=8, seed=0))
        logp, _ = response_logprobs_unpacked(model, prompts, [o.token_ids for o in outs])
        for i, o in enumerate(outs):
            torch.testing.assert_close(logp[i, : len(o.logprobs)].cpu(), torch.tensor(o.logprobs), atol=2e-2,
                                       rtol=0)
