"""RL step metrics (time split, throughput, length percentiles) and the per-pod Prometheus server.

One metrics server per pod: only the process with ``LOCAL_RANK`` 0 binds ``CODEKILN_METRICS_PORT``
(every RL metric is already reduced over ranks), so ``nprocPerNode > 1`` no longer makes the second
process die with EADDRINUSE; a port taken by something else is logged and skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import defaultdict

import torch

log = logging.getLogger(__name__)

PHASES = ("generate", "score", "train", "sync")

# step-metric key -> (Prometheus name, help); ratios end in _ratio, base units in the name.
GAUGES: dict[str, tuple[str, str]] = {
    "step": ("codekiln_rl_step", "Optimizer steps done."),
    "reward_mean": ("codekiln_rl_reward_mean", "Mean reward of the step's first generation batch."),
    "pass_rate": ("codekiln_rl_pass_ratio", "Share of rollouts passing all tests."),
    "loss": ("codekiln_rl_loss", "Policy loss."),
    "entropy": ("codekiln_rl_entropy", "Mean token entropy of the policy on the trained tokens."),
    "kl": ("codekiln_rl_kl", "Mean k3 KL to the reference policy on the trained tokens."),
    "clip_fraction": ("codekiln_rl_clip_ratio", "Share of loss tokens whose ratio was clipped."),
    "active_tasks": ("codekiln_rl_active_tasks", "Prompts the curriculum still samples."),
    "rollout_tokens_per_second": ("codekiln_rl_rollout_tokens_per_second", "Generated tokens per second."),
    "trainer_tokens_per_second": ("codekiln_rl_trainer_tokens_per_second", "Tokens through the trainer per second."),
    "response_len_p50": ("codekiln_rl_response_length_p50_tokens", "Median response length."),
    "response_len_p90": ("codekiln_rl_response_length_p90_tokens", "90th percentile response length."),
    "response_len_p99": ("codekiln_rl_response_length_p99_tokens", "99th percentile response length."),
    **{f"time_{p}_s": (f"codekiln_rl_{p}_seconds", f"Seconds spent in {p} during the last step.") for p in PHASES},
}


class StepClock:
    """Accumulates wall time per phase (thread-safe: async rollouts time themselves from their thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def time(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self._spent[phase] += time.perf_counter() - t0

    def count(self, name: str, amount: float) -> None:
        """Add to a counter (e.g. generated tokens) reported by the next :meth:`take`."""
        with self._lock:
            self._spent[f"count:{name}"] += amount

    def take(self) -> dict[str, float]:
        """``time_<phase>_s`` per phase and ``<counter>`` per counter since the last call (then reset)."""
        with self._lock:
            spent, self._spent = dict(self._spent), defaultdict(float)
        out = {f"time_{p}_s": spent.get(p, 0.0) for p in PHASES}
        out.update({k.removeprefix("count:"): v for k, v in spent.items() if k.startswith("count:")})
        return out


def length_percentiles(lengths: list[int]) -> dict[str, float]:
    """p50 / p90 / p99 / max of response lengths (tokens)."""
    if not lengths:
        return {"response_len_p50": 0.0, "response_len_p90": 0.0, "response_len_p99": 0.0, "response_len_max": 0.0}
    t = torch.tensor(lengths, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)).tolist()
    return {"response_len_p50": q[0], "response_len_p90": q[1], "response_len_p99": q[2],
            "response_len_max": float(t.max())}


def start_metrics_server(port: int | None = None, local_rank: int | None = None):
    """Start the pod's Prometheus server on local rank 0; returns ``{metric key: Gauge}`` or None.

    Args:
        port: the port (default: env ``CODEKILN_METRICS_PORT``; unset: no server).
        local_rank: this process's rank on its node (default: env ``LOCAL_RANK``, else 0).
    """
    from codekiln.workloads.contract import ENV_METRICS_PORT

    if port is None:
        raw = os.environ.get(ENV_METRICS_PORT)
        if not raw:
            return None
        port = int(raw)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank != 0:
        return None  # one server per pod: metrics are reduced over ranks already
    from prometheus_client import start_http_server

    try:
        start_http_server(port)
    except OSError as exc:  # e.g. EADDRINUSE from an unrelated process: lose metrics, not the run
        log.warning("RL metrics server not started on port %s: %s", port, exc)
        return None
    return {key: _gauge(name, doc) for key, (name, doc) in GAUGES.items()}


_REGISTERED: dict[str, object] = {}


def _gauge(name: str, doc: str):
    from prometheus_client import Gauge

    if name not in _REGISTERED:  # a second trainer in one process reuses the collectors
        _REGISTERED[name] = Gauge(name, doc)
    return _REGISTERED[name]


def export(gauges: dict | None, metrics: dict) -> None:
    """Set every gauge whose key is in ``metrics``."""
    if not gauges:
        return
    for key, gauge in gauges.items():
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            gauge.set(float(value))
