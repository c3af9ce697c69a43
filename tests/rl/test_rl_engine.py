"""Rollout engines: the torch engine's KV-cache sampling and the lazily imported vLLM engine."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.rl.engines import SamplingParams, build_engine
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


def _vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.vllm
@pytest.mark.skipif(not _vllm_available(), reason="needs the vllm package and a CUDA GPU")
def test_vllm_engine_matches_torch_engine_logprobs(make_model):
    model = make_model(torch.float32, vocab=64).cuda()
    engine = build_engine("vllm", model)
    outs = engine.generate([[1, 2, 3]] * 4, SamplingParams(max_tokens=8, temperature=1.0, seed=0))
    logp, _ = response_logprobs_unpacked(model, [[1, 2, 3]] * 4, [o.token_ids for o in outs])
    for i, o in enumerate(outs):
        torch.testing.assert_close(logp[i, : len(o.logprobs)].cpu(), torch.tensor(o.logprobs), atol=5e-2, rtol=0)
    engine.sleep()
    engine.wake_up()
    engine.update_weights(model.state_dict())
