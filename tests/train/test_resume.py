"""Checkpoints: atomic publish, keep-last-K, and exact resume across a stage boundary."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from codekiln.workloads.train.engine import init_distributed
from codekiln.workloads.train.runner import parse_config
from codekiln.workloads.train.trainer import Trainer

STAGES = [
    {"name": "short", "steps": 4, "lr": 3e-3, "seqLen": 32, "fimRate": 0.5, "lrWarmupSteps": 2},
    {"name": "long", "steps": 4, "lr": 1e-3, "seqLen": 64, "schedule": "cosine", "ropeTheta": 1e6},
]


def _losses(out) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_resume_reproduces_the_uninterrupted_run(tmp_path, packed_corpus, make_resource):
    cfgs = {
        name: parse_config(make_resource(packed_corpus, tmp_path / name, stages=STAGES,
                                         checkpoint={"everySteps": 3, "keepLast": 2}))
        for name in ("full", "crash")
    }
    env = init_distributed()
    full = Trainer(cfgs["full"], env).run()
    assert full["steps"] == 8

    Trainer(cfgs["crash"], env).run(stop_after_steps=7)  # dies after step 7, last checkpoint: step 6
    ckpts = tmp_path / "crash" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-00000004", "step-00000006"]
    (tmp_path / "crash" / "metrics.jsonl").unlink()
    resumed = Trainer(cfgs["crash"], env)
    summary = resumed.run()
    assert summary["steps"] == 8

    want, got = _losses(tmp_path / "full"), _losses(tmp_path / "crash")
    assert sorted(got) == [7, 8]
    assert got[7] == want[7] and got[8] == want[8]  # bitwise, same data order, FIM and optimizer state
    a = load_file(str(tmp_path / "full" / "hf" / "model.safetensors"))
    b = load_file(str(tmp_path / "crash" / "hf" / "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hf_config = json.loads((tmp_path / "crash" / "hf" / "config.json").read_text())
    assert hf_config["rope_theta"] == 1e6  # the last stage's RoPE base is exported


def test_resume_with_a_different_batch_layout_is_rejected_clearly(tmp_path, packed_corpus, make_resource):
    cfg = parse_config(make_resource(packed_corpus, tmp_path / "r", stages=STAGES[:1]))
    env = init_distributed()
    Trainer(cfg, env).run(stop_after_steps=3)
    other = parse_config(make_resource(packed_corpus, tmp_path / "r", stages=[{**STAGES[0], "seqLen": 64}]))
    try:
        Trainer(other, env).run()
    except ValueError as exc:
        assert "sampler state" in str(exc)
    else:
        raise AssertionError("resuming with another seqLen must fail")
