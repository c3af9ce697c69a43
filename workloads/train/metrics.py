"""Training metrics: loss, tokens/s, MFU, lr, grad norm -> Prometheus, progress reporter, rich, JSONL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from codekiln.workloads import contract
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.progress import progress_reporter

# Dense bf16 peak TFLOP/s per device, by substring of the CUDA device name.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x parameters (matmuls) + causal attention scores (PaLM appendix B)."""
    attn = 2 * cfg.dim * cfg.head_dim * (cfg.n_heads + 2 * cfg.n_kv_heads) + 2 * cfg.dim * cfg.head_dim * cfg.n_heads
    dense_mlp = 3 * 2 * cfg.dim * cfg.ffn_dim
    per_layer = [attn + dense_mlp] * cfg.n_layers
    if cfg.moe is not None:  # MoE: only the top-k experts (and the shared expert, router) a token uses count
        m = cfg.moe
        sparse = attn + 3 * 2 * cfg.dim * (m.expert_ffn_dim * m.top_k + m.shared_expert_ffn_dim) + 2 * cfg.dim * (
            m.num_experts + 1)
        per_layer = [sparse if cfg.is_sparse_layer(i) else attn + dense_mlp for i in range(cfg.n_layers)]
    matmul_params = (sum(per_layer) / 2) + cfg.dim * cfg.vocab_size
    attention = 6 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len  # 12·L·d·T halved for the causal mask
    return 6 * matmul_params + attention


def device_peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


_GAUGES: dict | None = None
GAUGE_NAMES = ("loss", "eval_loss", "unigram_eval_loss", "tokens_per_second", "mfu", "lr", "grad_norm", "step",
               "tokens")
# Prometheus names (conventions: ratios end in ``_ratio``, cumulative counts are counters ``_total``).
METRIC_NAMES = {"mfu": "codekiln_train_mfu_ratio", "tokens": "codekiln_train_tokens"}
COUNTERS = ("tokens",)  # cumulative: exposed as codekiln_train_tokens_total


def _prometheus(port: int) -> dict:
    """Gauges ``codekiln_train_<name>`` (and the ``codekiln_train_tokens_total`` counter) on ``port``."""
    global _GAUGES
    if _GAUGES is None:
        from prometheus_client import Counter, Gauge, start_http_server

        start_http_server(port)
        _GAUGES = {n: (Counter if n in COUNTERS else Gauge)(METRIC_NAMES.get(n, f"codekiln_train_{n}"),
                                                             f"Training {n.replace('_', ' ')}.") for n in GAUGE_NAMES}
    return _GAUGES


def _export(gauges: dict, record: dict, seen: dict) -> None:
    """Set gauges from one record; counters advance by the increase since the last record."""
    for key, metric in gauges.items():
        value = record.get(key)
        if not isinstance(value, (int, float)):
            continue
        if key in COUNTERS:
            delta = value - seen.get(key, 0)
            if delta > 0:
                metric.inc(delta)
            seen[key] = max(value, seen.get(key, 0))
        else:
            metric.set(value)


class Metrics:
    """Rank 0's sink for step metrics. Other ranks construct it with ``enabled=False``."""

    def __init__(self, output_dir: Path, enabled: bool, total_steps: int) -> None:
        self.enabled, self.total_steps = enabled, total_steps
        self.path = output_dir / "metrics.jsonl"
        self._gauges = None
        self._counted: dict[str, float] = {}
        self._progress = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        port = os.environ.get(contract.ENV_METRICS_PORT)
        if port:
            self._gauges = _prometheus(int(port))
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
        )
        self._task = self._progress.add_task("train", total=total_steps, stage="", info="")
        self._progress.start()

    def log(self, record: dict) -> None:
        """Write one record (must hold ``step`` and ``stage``) everywhere."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._gauges:
            _export(self._gauges, record, self._counted)
        progress_reporter().update(
            step=record["step"], total_steps=self.total_steps, stage=record["stage"], loss=record.get("loss"),
            throughput=record.get("tokens_per_second"), throughput_unit="tokens/s", tokens=record.get("tokens"),
            message=record.get("message"),
        )
        if self._progress is not None:
            info = " ".join(
                f"{k}={record[k]:.4g}" for k in ("loss", "eval_loss", "lr", "grad_norm", "tokens_per_second", "mfu")
                if isinstance(record.get(k), float)
            )
            self._progress.update(self._task, completed=record["step"], stage=record["stage"], info=info)

    def message(self, text: str, step: int, stage: str) -> None:
        """A transition or event: printed above the bar and reported as the progress message."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text)
        progress_reporter().update(step=step, stage=stage, message=text, force=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), "step": step, "stage": stage, "event": text}) + "\n")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self.enabled:
            progress_reporter().finish()
