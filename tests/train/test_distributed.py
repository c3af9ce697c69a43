"""Data parallel equivalence on CPU with gloo: real torchrun processes, real DeepSpeed ZeRO-2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codekiln.workloads.train.runner import run_local

STAGES = [{"name": "s1", "steps": 4, "lr": 3e-3, "seqLen": 32, "lrWarmupSteps": 1, "fimRate": 0.5}]


def launch(train_resource, tmp_path: Path, name: str, data: Path, nproc: int, **training) -> tuple[list[float], dict]:
    """Run ``python -m codekiln.workloads.train`` (under torchrun when nproc > 1); return losses and weights."""
    out = tmp_path / name
    resource = train_resource(data, out, stages=STAGES, **training)
    cfg_file = tmp_path / f"{name}.json"
    cfg_file.write_text(json.dumps(resource))
    entry = ["-m", "codekiln.workloads.train", "--config", str(cfg_file)]
    if nproc > 1:
        entry = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *entry]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, *entry], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == STAGES[0]["steps"]
    return losses, load_file(str(out / "hf" / "model.safetensors"))


def assert_same(a: tuple[list[float], dict], b: tuple[list[float], dict], tol: float) -> None:
    assert a[0] == pytest.approx(b[0], rel=tol, abs=tol)
    assert a[0][-1] < a[0][0]  # it trained
    for key, value in a[1].items():
        torch.testing.assert_close(value, b[1][key], atol=tol, rtol=0, msg=key)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, packed_corpus, make_resource):
    """The reference: plain torch, one process, micro-batch 4."""
    return launch(make_resource, tmp_path_factory.mktemp("one"), "one", packed_corpus, 1, microBatchSize=4)


def test_two_processes_equal_one_process_with_same_global_batch(make_resource, tmp_path, packed_corpus, monkeypatch,
                                                                one_process):
    one = one_process
    # The local runner launches torchrun with nprocPerNode processes (the same path `codekiln run --local` takes).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "two"
    resource = make_resource(packed_corpus, out, stages=STAGES, microBatchSize=1, gradAccumSteps=2, nprocPerNode=2)
    assert run_local(resource) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    two = [r["loss"] for r in records if "loss" in r], load_file(str(out / "hf" / "model.safetensors"))
    assert_same(one, two, 2e-5)


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_zero_equals_plain_torch(make_resource, tmp_path, packed_corpus, one_process, zero_stage):
    zero = launch(make_resource, tmp_path, f"zero{zero_stage}", packed_corpus, 2, microBatchSize=1, gradAccumSteps=2,
                  backend="deepspeed", zeroStage=zero_stage)
    assert_same(one_process, zero, 5e-5)
