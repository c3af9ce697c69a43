"""Metrics reach Prometheus, the progress reporter and metrics.jsonl; FLOP accounting matches the model."""

from __future__ import annotations

import json
import socket
import urllib.request

from torch import nn

from codekiln.workloads import progress
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.train.engine import init_distributed
from codekiln.workloads.train.metrics import flops_per_token
from codekiln.workloads.train.runner import parse_config
from codekiln.workloads.train.trainer import Trainer


def test_flops_per_token_counts_every_matmul_parameter():
    cfg = ModelConfig(preset="small")
    model = Transformer(cfg)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    attention = 6 * cfg.n_layers * cfg.dim * 1024
    assert flops_per_token(cfg, 1024) == 6 * linear + attention


def test_training_metrics_reach_prometheus_progress_and_jsonl(tmp_path, packed_corpus, make_resource, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CODEKILN_METRICS_PORT", str(port))
    monkeypatch.setenv(progress.PROGRESS_FILE_ENV, str(tmp_path / "progress.json"))
    monkeypatch.setattr(progress, "_REPORTER", None)
    cfg = parse_config(make_resource(packed_corpus, tmp_path / "out", peakTflops=1.0))
    Trainer(cfg, init_distributed()).run()

    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in scraped.splitlines() if line.startswith("codekiln_")}
    assert values["codekiln_train_step"] == 4
    assert 0 < values["codekiln_train_loss"] < 10 and values["codekiln_train_tokens_per_second"] > 0
    assert 0 < values["codekiln_train_mfu_ratio"] < 1 and values["codekiln_train_grad_norm"] > 0
    assert values["codekiln_train_tokens_total"] > 0 and "# TYPE codekiln_train_tokens_total counter" in scraped
    assert values["codekiln_train_lr"] == 3e-3

    status = json.loads((tmp_path / "progress.json").read_text())
    assert status["totalSteps"] == 4 and status["stage"] in ("s1", "export")
    records = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert any("stage 1/1 's1'" in r.get("event", "") for r in records)
    assert steps[-1]["eval_loss"] < steps[-1]["unigram_eval_loss"] + 3  # evaluated, finite
